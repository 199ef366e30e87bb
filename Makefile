# Two entry points: `make run` starts the daemon on the built-in default
# config (the demo; etc/pyvswitchd.toml is the inert file to install),
# `make test` runs the whole test suite.  Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
RUNDIR := $(CURDIR)/run

.PHONY: run test lint venv clean

$(BIN)/pyvswitchd: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

venv: $(BIN)/pyvswitchd

run: venv
	mkdir -p $(RUNDIR)
	$(BIN)/pyvswitchd --rundir $(RUNDIR) --log-file=$(RUNDIR)/pyvswitchd.log

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports

# Every end-to-end test starts daemon and CLI processes that import the
# package afresh; where PYTHONDONTWRITEBYTECODE is set (CI images set it)
# each of them would compile it from source again, ~0.4 s a start.
test: venv lint
	$(BIN)/python -m compileall -q pyvswitchd pyappctl
	$(BIN)/pytest -q

clean:
	rm -rf $(VENV) $(RUNDIR) .pytest_cache .mypy_cache .ruff_cache .import_linter_cache
