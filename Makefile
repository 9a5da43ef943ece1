# The two set-up commands are `make demo` and `make test`; each creates .venv on first use.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean down

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/relman demo

# Two processes for the suite; the crash-and-outage campaign (tests/reliability) runs its
# scenarios side by side in one process of its own, after the rest.
test: $(STAMP)
	$(BIN)/python -m pytest -q -ra -n 2 --ignore=tests/reliability
	$(BIN)/python -m pytest -q -ra tests/reliability

# Benchmarks against a stack of their own (docs/benchmarks.md); `python -m bench --help`.
bench: $(STAMP)
	$(BIN)/python -m bench

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy common models workflows activities worker client console

down: $(STAMP)
	$(BIN)/relman dev down

clean:
	-test -x $(BIN)/relman && $(BIN)/relman dev down
	rm -rf $(VENV) .relman
