# healthscore: every target creates its own virtual environment when missing, at the tested
# versions pinned in requirements.lock (pyproject.toml keeps only the floors).
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
LOCK    = requirements.lock

.PHONY: demo test check bench lab venv clean data lock browsers engines

$(STAMP): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[all,dev]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 >/dev/null
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(BIN)/healthscore demo --out build/demo

# the gates first (seconds), then the tests; system programs the tests drive are provided first
test: $(STAMP) check browsers engines
	$(BIN)/python -m pytest $(PYTEST_ARGS)

check: $(STAMP)
	$(BIN)/ruff check toolkit tests
	$(BIN)/ruff format --check toolkit tests
	$(BIN)/lint-imports
	$(BIN)/mypy

browsers:
	@.ci/provide chromium

# Spark tests need Java (stops with the install line when it cannot be provided); the PostgreSQL
# tests start their own throwaway server and are skipped, with the reason, where none can be installed
engines:
	@.ci/provide java
	-@.ci/provide postgres

# the benchmarks' own baselines (Featuretools) come with the bench extra; without it that row is skipped
bench: $(STAMP)
	-$(BIN)/pip install --quiet -c $(LOCK) -e '.[bench]'
	$(BIN)/python -m tests.benchmarks

lab: $(STAMP)
	cd notebooks && ../$(BIN)/jupyter lab

data: $(STAMP)
	$(BIN)/healthscore sample --out data

# re-pin the tested versions after changing dependencies in pyproject.toml
lock: $(STAMP)
	$(BIN)/pip freeze --exclude-editable | grep -v '^healthscore' > $(LOCK)

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache
