# The course's commands. `make course` runs the whole course headless; `make test` checks it.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
.DEFAULT_GOAL := help

PYTHON ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
COURSE_OUTPUT ?= build/executed
# Notebook parameters for `make course`, e.g. COURSE_PARAMS=params/ci.yml (tiny sizes).
COURSE_PARAMS ?=
export COURSE_OUTPUT COURSE_PARAMS

.PHONY: help setup course test lab bench figures lock clean-workspace

help: ## list the commands
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# Re-installs only when the lock or the package metadata changed since the last install.
$(BIN)/.installed: requirements.txt pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found. Install Python 3.11 or run 'make PYTHON=/path/to/python3.11 setup'." >&2; exit 1; }
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@# This machine's pip lists an extra local index; its "is ignored" warnings are noise.
	$(BIN)/python -m pip install --quiet -r requirements.txt 2>&1 | { grep -v "is ignored: it is neither" || true; }
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation -e .
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (MLflow course)" >/dev/null
	@touch $@

setup: $(BIN)/.installed ## make .venv with the pinned environment and the utils package
	@echo "environment ready: $(VENV) ($$($(BIN)/python -c 'import mlflow; print("mlflow", mlflow.__version__)'))"

course: setup ## execute every notebook in order on the default store into $(COURSE_OUTPUT)
	$(BIN)/python -m tools.batch run --output "$(COURSE_OUTPUT)" $(if $(COURSE_PARAMS),--params "$(COURSE_PARAMS)")

test: setup ## run the unit tests and the notebook checks
	$(BIN)/python -m pytest

lab: setup ## open the course in JupyterLab
	$(BIN)/jupyter lab notebooks/01_local_setup.ipynb

bench: setup ## notebook 03 benchmarks: time, autologging overhead, accuracy (about 25 min on 2 cores)
	$(BIN)/python tools/benchmarks/notebook03.py
	$(BIN)/python tools/benchmarks/autolog_overhead.py --rounds 3
	$(BIN)/python tools/benchmarks/notebook03.py --accurate

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
