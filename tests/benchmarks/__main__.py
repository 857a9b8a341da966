"""Run every benchmark, print one table of ratios, write ``build/bench.json``.

Usage: ``python -m tests.benchmarks [-k NAME]`` (``make bench``).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import tempfile
import traceback
from pathlib import Path

from tests.benchmarks import Result


def _discover(keyword: str | None):
    pkg_dir = Path(__file__).parent
    for info in sorted(pkgutil.iter_modules([str(pkg_dir)]), key=lambda i: i.name):
        if not info.name.startswith("bench_"):
            continue
        module = importlib.import_module(f"tests.benchmarks.{info.name}")
        for name in sorted(dir(module)):
            fn = getattr(module, name)
            if name.startswith("bench_") and callable(fn):
                full = f"{info.name}.{name}"
                if keyword is None or keyword in full:
                    yield full, fn


def _fmt(x: float | None, unit: str = "") -> str:
    if x is None:
        return "-"
    if unit == "s":
        return f"{x * 1000:.1f} ms" if x < 1 else f"{x:.2f} s"
    return f"{x:.3g}{unit}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="make bench", description=__doc__)
    parser.add_argument("-k", dest="keyword", help="only benchmarks whose name contains this")
    parser.add_argument("--out", default="build/bench.json", help="where to write the JSON results")
    args = parser.parse_args(argv)

    rows: list[Result] = []
    errors: list[str] = []
    for full, fn in _discover(args.keyword):
        print(f"running {full} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(fn())
        except Exception:  # one failing benchmark must not hide the others
            errors.append(f"{full}:\n{traceback.format_exc()}")

    header = f"{'benchmark':<34} {'measure':<34} {'ours':>11} {'baseline':>11} {'ratio':>8}  {'goal':<24} ok"
    print(header)
    print("-" * len(header))
    for r in rows:
        ok = {True: "yes", False: "NO", None: "-"}[r.ok]
        print(
            f"{r.benchmark:<34} {r.measure:<34} {_fmt(r.ours, r.unit):>11} {_fmt(r.baseline, r.unit):>11} "
            f"{_fmt(r.ratio, 'x') if r.ratio is not None else '-':>8}  {r.goal:<24} {ok}"
        )
    for e in errors:
        print(f"\nFAILED {e}", file=sys.stderr)

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=out.parent, suffix=".json")
    with os.fdopen(fd, "w") as fh:
        json.dump({"results": [r.to_dict() for r in rows], "errors": errors}, fh, indent=2, default=str)
    os.replace(tmp, out)
    print(f"\nwritten {out}")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
