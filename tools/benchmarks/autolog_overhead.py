"""How much time does MLflow add to notebook 03's run?

Trains the same run (notebook 03's defaults, same seed) several times in one process:

- ``plain``    no MLflow at all: the training time itself;
- ``course``   what notebook 03 does: ``mlflow.pytorch.autolog(log_every_n_step=4,
               checkpoint_monitor="val_cross_entropy", log_models=False)`` and its
               ``record_run``: the datasets as inputs, system metrics, and the model
               logged with pinned requirements;
- ``chapter``  the chapter's plain ``mlflow.pytorch.autolog()``: the model is logged by
               autologging, which infers its pip requirements by loading it again in a
               separate Python process (and keeps no checkpoint: there is no ``val_loss``).

The variants are interleaved (plain, course, chapter, plain, ...) so that a burst of load
from other programs hits them alike. Lightning's Timer callback times its fit and test
loops; MLflow's cost is the time a run spends outside them, compared with the plain runs.
The checkpoint is saved inside the fit loop, so its cost is measured on its own at the end:
saving the trained model as Lightning does, and logging the file as an artifact.

    .venv/bin/python tools/benchmarks/autolog_overhead.py [--rounds 3]

It records into a temporary workspace, never the course's own, and deletes it at the end.
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
VARIANTS = ("plain", "course", "chapter")


def one_run(variant: str, params) -> dict[str, float]:
    """Train and test once; return the wall seconds, the loops' seconds and the accuracy."""
    import mlflow
    from pytorch_lightning.callbacks import Timer

    from utils import ch03, runs

    timer = Timer()  # Lightning's: the seconds of its fit and test loops
    folder, datamodule, model, trainer = pieces = runs.run_pieces(params, timer)
    trainer.progress_bar_callback.disable()
    wall = time.perf_counter()
    if variant == "plain":
        mlflow.pytorch.autolog(disable=True)
        trainer.finetune(model, datamodule=datamodule, strategy=params.strategy)
        results = trainer.test(model, datamodule=datamodule, verbose=False)
    elif variant == "course":
        ch03.autolog_lightning()
        run, _ = ch03.record_run(params, *pieces, run_name="bench-course")
        results = [mlflow.get_run(run.info.run_id).data.metrics]
    else:
        mlflow.pytorch.autolog(silent=True)
        with mlflow.start_run(run_name="bench-chapter"):
            trainer.finetune(model, datamodule=datamodule, strategy=params.strategy)
            results = trainer.test(model, datamodule=datamodule, verbose=False)
    wall = time.perf_counter() - wall
    loops = timer.time_elapsed("train") + timer.time_elapsed("test")
    return {"wall": wall, "loops": loops, "rest": wall - loops,
            "accuracy": results[0]["test_accuracy"], "trainer": trainer}


def checkpoint_seconds(trainer, folder: Path) -> tuple[float, float]:
    """Seconds to save the trained model as a checkpoint and to log it; and its size in MB."""
    import mlflow

    path = folder / "latest_checkpoint.pth"
    started = time.perf_counter()
    with mlflow.start_run(run_name="bench-checkpoint"):
        trainer.save_checkpoint(str(path))
        mlflow.log_artifact(str(path), "checkpoints")
    return time.perf_counter() - started, path.stat().st_size / 2**20


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="runs of each variant")
    args = parser.parse_args()

    workspace = tempfile.mkdtemp(prefix="bench-autolog-")
    os.environ["COURSE_WORKSPACE"] = workspace
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.getLogger("pytorch_lightning").setLevel(logging.ERROR)
    logging.getLogger("mlflow").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    try:
        import mlflow

        import utils
        from utils import training

        utils.use_workspace()
        mlflow.set_experiment("benchmark_autolog")
        params = training.validate_parameters()
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs", flush=True)
        # One untimed tiny run loads every library and warms the caches.
        one_run("plain", training.validate_parameters(train_size=32, val_size=8, test_size=8))

        runs: dict[str, list[dict]] = {variant: [] for variant in VARIANTS}
        for round_ in range(args.rounds):
            for variant in VARIANTS:
                result = one_run(variant, params)
                runs[variant].append(result)
                print(f"round {round_ + 1} {variant:<8} wall {result['wall']:6.1f} s  "
                      f"loops {result['loops']:6.1f} s  rest {result['rest']:5.1f} s  "
                      f"test_accuracy {result['accuracy']:.3f}  load {os.getloadavg()[0]:.2f}", flush=True)

        def median(variant, key):
            return statistics.median(r[key] for r in runs[variant])

        base, loops = median("plain", "wall"), median("plain", "loops")
        print(f"\ntraining+test without MLflow: median wall {base:.1f} s (Lightning loops {loops:.1f} s)")
        for variant in ("course", "chapter"):
            extra = median(variant, "rest") - median("plain", "rest")
            print(f"{variant:<8} adds {extra:5.1f} s outside the loops = {extra / base:+.0%} of the "
                  f"training time (total wall {median(variant, 'wall'):.1f} s)")
        seconds, size = checkpoint_seconds(runs["course"][-1]["trainer"], Path(workspace))
        print(f"the checkpoint ({size:.0f} MB), saved and logged once per epoch: {seconds:.1f} s "
              f"= {seconds / base:+.0%} of the training time (inside the loops above)")
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    finally:
        shutil.rmtree(workspace, ignore_errors=True)


if __name__ == "__main__":
    main()
