// Sort and filter the accounts table of a scorecard index, offline.
// The page's Content-Security-Policy allows this one script by its hash; it reads text and data-*
// attributes, moves existing rows and sets text: it never writes markup and never loads anything.
(function () {
  "use strict";
  var table = document.getElementById("hs-accounts");
  var search = document.getElementById("hs-search");
  var shown = document.getElementById("hs-shown");
  if (!table || !table.tBodies.length || !table.tHead) {
    return;
  }
  var body = table.tBodies[0];
  var rows = Array.prototype.slice.call(body.rows);
  var buttons = Array.prototype.slice.call(table.tHead.querySelectorAll("button[data-col]"));

  function value(row, col, kind) {
    var text = row.cells[col].getAttribute("data-sort");
    if (text === null) {
      text = row.cells[col].textContent;
    }
    if (kind === "number") {
      return text === "" ? null : Number(text);
    }
    text = text.trim().toLowerCase();
    return text === "" ? null : text;
  }

  function sortBy(button) {
    var col = Number(button.getAttribute("data-col"));
    var kind = button.getAttribute("data-kind");
    var th = button.parentNode;
    var up = th.getAttribute("aria-sort") !== "ascending";
    var keyed = rows.map(function (row, at) {
      return { row: row, at: at, key: value(row, col, kind) };
    });
    keyed.sort(function (a, b) {
      if (a.key === b.key) {
        return a.at - b.at;
      }
      if (a.key === null) {
        return 1; // blanks last either way
      }
      if (b.key === null) {
        return -1;
      }
      var order = a.key < b.key ? -1 : 1;
      return up ? order : -order;
    });
    keyed.forEach(function (k) {
      body.appendChild(k.row);
    });
    buttons.forEach(function (other) {
      other.parentNode.removeAttribute("aria-sort");
    });
    th.setAttribute("aria-sort", up ? "ascending" : "descending");
  }

  function filter() {
    var words = search.value.trim().toLowerCase().split(/\s+/).filter(Boolean);
    var count = 0;
    rows.forEach(function (row) {
      var text = row.textContent.toLowerCase();
      var match = words.every(function (w) {
        return text.indexOf(w) !== -1;
      });
      row.hidden = !match;
      count += match ? 1 : 0;
    });
    if (shown) {
      shown.textContent = words.length ? count + " of " + rows.length + " accounts match" : "";
    }
  }

  buttons.forEach(function (button) {
    button.disabled = false;
    button.addEventListener("click", function () {
      sortBy(button);
    });
  });
  var find = document.getElementById("hs-find");
  if (search && find) {
    find.hidden = false;
    search.addEventListener("input", filter);
  }
})();
