"""How much time does MLflow's autologging add to notebook 03's training run?

Trains the same run (notebook 03's defaults, same seed) several times in one process:

- ``plain``    no MLflow at all: the training time itself;
- ``chapter``  ``mlflow.pytorch.autolog()``, as the chapter does: MLflow infers the
               model's pip requirements by loading it in a subprocess;
- ``pinned``   ``mlflow.pytorch.autolog(log_models=False)`` and then
               ``utils.training.log_model_pinned`` (requirements pinned from the installed
               versions, no inference): what notebook 03 shows second.

The variants are interleaved (plain, chapter, pinned, plain, ...) so that a burst of load
from other programs hits them alike. The trainer's stopwatch (utils.training.make_trainer)
times Lightning's fit and test loops; MLflow's cost is measured as the time a run spends
outside them (model summary, model, requirements), compared with the plain runs, which is
far less sensitive to other programs than the difference of two total times. MLflow's
small work inside the loops (parameters at the start, metrics once per epoch) is not
separated; the total wall times are printed too.

    COURSE_DATA_DIR=/path/to/imdb .venv/bin/python benchmarks/autolog_overhead.py [--rounds 2]

It records into a temporary workspace, never the course's own, and deletes it at the end.
"""

from __future__ import annotations

import argparse
import atexit
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
TARGET = 0.15  # the course's budget: autologging may add at most 15 % to the training time


def cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def one_run(variant: str, params) -> dict[str, float]:
    """Train and test once; return wall/CPU seconds, the loops' seconds and the accuracy."""
    import mlflow

    from utils import training

    datamodule = training.make_datamodule(params)
    model = training.make_model(params, datamodule)
    trainer = training.make_trainer(params)
    wall, cpu = time.perf_counter(), cpu_seconds()
    if variant == "plain":
        mlflow.pytorch.autolog(disable=True)
        trainer.finetune(model, datamodule=datamodule, strategy=params.strategy)
        results = trainer.test(model, datamodule=datamodule)
    else:
        mlflow.pytorch.autolog(log_models=(variant == "chapter"))
        with mlflow.start_run(run_name=f"bench-{variant}"):
            trainer.finetune(model, datamodule=datamodule, strategy=params.strategy)
            results = trainer.test(model, datamodule=datamodule)
            if variant == "pinned":
                training.log_model_pinned(model)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    watch = next(c for c in trainer.callbacks if type(c).__name__ == "Stopwatch")
    loops = watch.seconds["fit"] + watch.seconds["test"]
    return {"wall": wall, "cpu": cpu, "loops": loops, "rest": wall - loops,
            "accuracy": results[0]["test_accuracy"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant")
    args = parser.parse_args()

    workspace = tempfile.mkdtemp(prefix="bench-autolog-")
    atexit.register(shutil.rmtree, workspace, ignore_errors=True)  # ~0.5 GB of models
    os.environ["COURSE_WORKSPACE"] = workspace
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    import logging

    import mlflow

    import utils
    from utils import training

    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    utils.use_workspace()
    mlflow.set_experiment("benchmark_autolog")
    params = training.validate_parameters()
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)

    # One untimed tiny run loads every library and warms the caches.
    one_run("plain", training.validate_parameters(train_size=32, val_size=8, test_size=8, batch_size=8))

    runs: dict[str, list[dict[str, float]]] = {"plain": [], "chapter": [], "pinned": []}
    for round_ in range(args.rounds):
        for variant in runs:
            result = one_run(variant, params)
            runs[variant].append(result)
            print(f"round {round_ + 1} {variant:<8} wall {result['wall']:6.1f} s  cpu {result['cpu']:6.1f} s  "
                  f"loops {result['loops']:6.1f} s  rest {result['rest']:5.1f} s  "
                  f"test_accuracy {result['accuracy']:.3f}  load {os.getloadavg()[0]:.2f}", flush=True)

    def median(variant, key):
        return statistics.median(r[key] for r in runs[variant])

    base = median("plain", "wall")
    loops = median("plain", "loops")
    print(f"\ntraining+test without MLflow: median wall {base:.1f} s "
          f"(Lightning loops {loops:.1f} s, set-up {median('plain', 'rest'):.1f} s)")
    for variant in ("chapter", "pinned"):
        # MLflow's work happens outside Lightning's loops: compare what is left outside them.
        extra = median(variant, "rest") - median("plain", "rest")
        verdict = "within" if extra / base <= TARGET else "OVER"
        print(f"{variant:<8} adds {extra:5.1f} s outside the loops = {extra / base:+.0%} of the training "
              f"time -> {verdict} the {TARGET:.0%} budget  (total wall {median(variant, 'wall'):.1f} s, "
              f"{median(variant, 'wall') / base - 1:+.0%}, noisy on a shared machine)")

    # Where the chapter variant's time goes: logging the same (untrained) model both ways.
    datamodule = training.make_datamodule(params)
    model = training.make_model(params, datamodule)
    with mlflow.start_run(run_name="bench-log-model"):
        for label, log in (
            ("log_model, inferred requirements", lambda: mlflow.pytorch.log_model(
                model, name="inferred", serialization_format="pickle")),
            ("log_model, pinned requirements", lambda: training.log_model_pinned(model, name="pinned")),
        ):
            wall, cpu = time.perf_counter(), cpu_seconds()
            log()
            print(f"{label:<34} wall {time.perf_counter() - wall:5.1f} s  cpu {cpu_seconds() - cpu:5.1f} s")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
