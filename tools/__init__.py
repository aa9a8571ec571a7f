"""The machinery that runs, tests, benchmarks and photographs the course.

Nothing here is imported by a notebook: the notebooks use ``utils``. From the course folder:

- ``python -m tools.batch run|sweep``: run notebooks headless (``make course`` calls it);
- ``python -m tools.exercises solve|list``: fill a notebook's exercises in with their
  solutions (or typical mistakes), or list each notebook's exercises;
- ``python -m tools.scan_secrets PATH``: look for tokens and passwords in executed notebooks;
- ``python -m tools.lockfiles``: write the conda and Binder files from the lock (``make lock``);
- ``python tools/figures.py``: photograph the MLflow UI (``make figures``);
- ``tools/benchmarks/``: the scripts behind ``make bench``;
- ``tools/params/``: parameter files for headless runs.
"""
