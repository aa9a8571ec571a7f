# The course's commands. `make course` runs the whole course headless; `make test` checks it.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

# The course runs on Python 3.11 or 3.12: the first of these that runs, unless PYTHON= names one.
PYTHON ?= $(firstword $(foreach p,python3.11 python3.12,$(if $(shell $(p) -c "" 2>/dev/null && echo ok),$(p))))
VENV ?= .venv
BIN := $(VENV)/bin
COURSE_OUTPUT ?= build/executed
# Notebook parameters for `make course`, e.g. COURSE_PARAMS=tools/params/ci.yml (tiny sizes).
COURSE_PARAMS ?=
# The edition `make course` and `make lab` open: en, or zh_CN for notebooks/zh/ (中文版).
COURSE_LANGUAGE ?= en
NOTEBOOKS := notebooks$(if $(filter zh_CN,$(COURSE_LANGUAGE)),/zh)
export COURSE_OUTPUT COURSE_PARAMS
# Test workers (pytest-xdist; conftest.py groups the tests): 2 suits 2 cores and ~1.5 GB each.
TEST_WORKERS ?= 2
PYTEST_WORKERS := -n $(TEST_WORKERS) --dist loadgroup

.PHONY: help setup course test test-unit test-full test-latest lab bench bench-memory binder-check figures lock clean-workspace

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Re-installs only when the lock or the package metadata changed since the last install.
$(BIN)/.installed: requirements.txt pyproject.toml
	@test -n "$(PYTHON)" || { echo "error: no Python 3.11 or 3.12 found. Install one, or run 'make PYTHON=/path/to/python3.12 setup'." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# pip warns about index folders of its configuration that do not exist; for the course that is noise.
	$(BIN)/python -m pip install --quiet -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (MLflow course)" >/dev/null
	@touch $@

setup: $(BIN)/.installed ## make .venv with the pinned environment and the utils package
	@echo "environment ready: $(VENV) ($$($(BIN)/python -c 'import mlflow; print("mlflow", mlflow.__version__)'))"

course: setup ## execute every notebook in order on the default store into $(COURSE_OUTPUT) (COURSE_LANGUAGE=zh_CN: 中文版)
	$(BIN)/python -m tools.batch run --notebooks-dir $(NOTEBOOKS) --output "$(COURSE_OUTPUT)" $(if $(COURSE_PARAMS),--params "$(COURSE_PARAMS)")

test: setup ## the unit tests, and every notebook once under nbval (about 7 min on 2 cores)
	$(BIN)/python -m pytest -m "not full" $(PYTEST_WORKERS)

test-unit: setup ## the unit tests alone, without the notebooks (about a minute)
	$(BIN)/python -m pytest -m "not full" $(PYTEST_WORKERS) tests

test-full: setup ## the exhaustive checks: every notebook on its own, filled in, on servers (CI runs them too)
	$(BIN)/python -m pytest -m full --durations=25 $(PYTEST_WORKERS)

test-latest: setup ## run every notebook against the newest MLflow 3 release (needs the package index)
	$(BIN)/python -m tools.latest

# As root, JupyterLab refuses to start without --allow-root (containers, many cloud machines).
lab: setup ## open the course in JupyterLab (COURSE_LANGUAGE=zh_CN: the Chinese edition, 中文版)
	$(BIN)/jupyter lab $(if $(filter 0,$(shell id -u)),--allow-root) $(NOTEBOOKS)/01_local_setup.ipynb

bench: setup bench-memory ## time, accuracy and memory of the course (about 20 min on 2 cores)
	$(BIN)/python tools/benchmarks/training.py
	$(BIN)/python tools/benchmarks/autolog_overhead.py --rounds 3
	$(BIN)/python tools/benchmarks/training.py --accurate

bench-memory: setup ## does the course fit Binder's 1 CPU and 2 GiB? (cgroups: run as root)
	$(BIN)/python tools/benchmarks/memory.py

# No Docker engine needed: repo2docker renders the Dockerfile, a venv stands in for its pip layer.
binder-check: setup ## rebuild Binder's Python layer in build/binder and check it (a few min)
	$(BIN)/python -m tools.binder_check

figures: setup ## photograph the MLflow UI for the notebooks (needs chromium: .ci/browser.sh)
	$(BIN)/python tools/figures.py

lock: ## recompile requirements.txt from requirements.in and regenerate the conda files
	$(BIN)/python -m pip install --quiet pip-tools
	$(BIN)/pip-compile --quiet --strip-extras --allow-unsafe --no-emit-index-url --no-emit-find-links -o requirements.txt requirements.in
	@# A CPU wheel of torch carries a +cpu label; the lock names the plain version.
	sed -i -E 's/^(torch==[0-9.]+)\+cpu/\1/' requirements.txt
	$(BIN)/python -m tools.lockfiles

clean-workspace: ## delete the course workspace (the MLflow store of every notebook)
	rm -rf workspace
