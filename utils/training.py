"""What notebook 03's run needs besides the code it shows: checked parameters, the data
subset, quiet libraries, the trainer's callbacks, the pinned requirements of its model.

Notebook 03 defines the run itself in its ``#@save`` cells (saved as :mod:`utils.ch03`):
the datasets, the data module, the classifier, the trainer, autologging, and what the run
logs inside its ``mlflow.start_run`` block; they use the helpers below. :mod:`utils.runs`
makes and finds the runs of later notebooks with those same functions.
"""

from __future__ import annotations

import ast
import importlib.util
import logging
import os
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from importlib import metadata
from typing import Any

from utils.errors import CourseError

# The notebook's parameters and their defaults (tests check that the notebook agrees).
DEFAULTS: dict[str, Any] = {
    "experiment_name": "dl_model_chapter02",
    "run_name": "chapter02",
    "train_size": 500,
    "val_size": 100,
    "test_size": 200,
    "max_epochs": 1,
    "batch_size": 16,
    "learning_rate": 0.03,
    "strategy": "freeze",
    "backbone": None,
    "pooling": "mean",
    "max_length": 128,
    "accelerator": "auto",
    "seed": 42,
}

# What the classification layer sees: "mean", the average of the token vectors (what
# all-MiniLM-L6-v2 was trained to give, utils.pooling), or "pooler", flash's own choice for
# Hugging Face backbones (BERT's pooler output, computed from the first token).
POOLINGS = ("mean", "pooler")

# lightning-flash 0.8.2's fine-tuning strategies (its registry is private; a test checks
# that this list still matches it).
FLASH_STRATEGIES = (
    "freeze", "freeze_deepspeed", "freeze_unfreeze", "freeze_unfreeze_deepspeed",
    "no_freeze", "no_freeze_deepspeed", "unfreeze_milestones", "unfreeze_milestones_deepspeed",
)
# Fine-tuning strategies of lightning-flash that take no extra value, and those that do.
SIMPLE_STRATEGIES = ("freeze", "no_freeze")
STRATEGY_EXAMPLES = {
    "freeze_unfreeze": "('freeze_unfreeze', 1): unfreeze the backbone at epoch 1",
    "unfreeze_milestones": "('unfreeze_milestones', ((1, 2), 2)): unfreeze 2 layers at "
    "epoch 1 and all at epoch 2",
}

# What a run records about where it came from: the notebook whose code trains it (tools.batch
# rerun executes that notebook again), the names of the parameters the course logged for it
# (the rest are autologging's), and, for a re-run, the run it repeats.
TRAINING_NOTEBOOK = "03_first_autologged_run.ipynb"
NOTEBOOK_TAG = "course.notebook"
PARAMETERS_TAG = "course.parameters"
RERUN_TAG = "course.rerun_of"
# The parameters that shape a run (experiment_name and run_name only say where it goes).
PLACEMENT = ("experiment_name", "run_name")
RUN_PARAMETERS = tuple(name for name in DEFAULTS if name not in PLACEMENT)
# Set by the course's notebook runner and tests: no live progress widget, a line per epoch.
HEADLESS_ENV = "COURSE_HEADLESS"


# -- parameters ---------------------------------------------------------------------
@dataclass(frozen=True)
class RunParameters:
    """The checked parameters of one training run (see :func:`validate_parameters`)."""

    experiment_name: str
    run_name: str
    train_size: int
    val_size: int
    test_size: int
    max_epochs: int
    batch_size: int
    learning_rate: float
    strategy: str | tuple
    backbone: str  # a folder or hub id, resolved and checked
    pooling: str
    max_length: int
    accelerator: str
    seed: int
    data: Any = field(default=None, repr=False, compare=False)  # utils.data.ImdbFolder

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "data"}


def _whole(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CourseError(f"{name} must be a whole number; got {value!r}.")
    if value < minimum or (maximum is not None and value > maximum):
        bounds = f"from {minimum} to {maximum}" if maximum is not None else f">= {minimum}"
        raise CourseError(f"{name} must be {bounds}; got {value}.")
    return value


def _name(name: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise CourseError(f"{name} must be a non-empty string; got {value!r}.")
    return value


def check_strategy(strategy: object) -> str | tuple:
    """Check a lightning-flash fine-tuning strategy; return it in the form flash takes.

    ``"freeze"`` trains only the classification head, ``"no_freeze"`` the whole network.
    ``("freeze_unfreeze", epoch)`` and ``("unfreeze_milestones", ((e1, e2), layers))``
    unfreeze during training (papermill passes them as lists, which are accepted).
    """
    known = FLASH_STRATEGIES
    key = strategy[0] if isinstance(strategy, (list, tuple)) and strategy else strategy
    if not isinstance(key, str) or key not in known:
        raise CourseError(
            f"strategy={strategy!r} is not a fine-tuning strategy of lightning-flash. Use "
            f"{' or '.join(map(repr, SIMPLE_STRATEGIES))}, or one of "
            + "; ".join(STRATEGY_EXAMPLES.values())
            + f". (flash knows: {', '.join(known)}.)"
        )
    if key.endswith("_deepspeed"):
        if importlib.util.find_spec("deepspeed") is None:
            raise CourseError(
                f"strategy={key!r} needs the DeepSpeed library, which the course does not "
                f"install. Use {key.removesuffix('_deepspeed')!r} instead."
            )
        key_base = key.removesuffix("_deepspeed")
    else:
        key_base = key
    if key_base in SIMPLE_STRATEGIES:
        if isinstance(strategy, (list, tuple)) and len(strategy) > 1:
            raise CourseError(f"strategy={key!r} takes no extra value; got {strategy!r}.")
        return key
    example = STRATEGY_EXAMPLES[key_base]
    if not isinstance(strategy, (list, tuple)) or len(strategy) != 2:
        raise CourseError(f"strategy={key!r} needs a value, for example strategy={example}.")
    value = strategy[1]
    try:
        if key_base == "freeze_unfreeze":
            epoch = _whole("the unfreeze epoch of strategy", value, 0)
            return (key, epoch)
        (first, second), layers = value
        return (key, ((_whole("strategy milestone", first, 0), _whole("strategy milestone", second, 0)),
                      _whole("strategy layers", layers, 1)))
    except (TypeError, ValueError):
        raise CourseError(f"strategy={strategy!r} is malformed; for example strategy={example}.") from None


def check_accelerator(accelerator: object) -> str:
    """Check the name of a Lightning accelerator (``"auto"`` picks a GPU when there is one)."""
    from pytorch_lightning.accelerators import AcceleratorRegistry

    known = ["auto", "gpu", *AcceleratorRegistry.available_accelerators()]
    if not isinstance(accelerator, str) or accelerator not in known:
        raise CourseError(
            f"accelerator={accelerator!r} is not an accelerator Lightning knows. Use "
            f"'auto' (a GPU if there is one, else the CPU), or one of {', '.join(sorted(set(known) - {'auto'}))}."
        )
    name = "cuda" if accelerator == "gpu" else accelerator
    if name != "auto" and not AcceleratorRegistry[name]["accelerator"].is_available():
        raise CourseError(f"accelerator={accelerator!r} cannot be used on this machine: it has no "
                          f"{name.upper()} device. Use accelerator='auto', which falls back to the CPU.")
    return accelerator


def validate_parameters(**parameters: Any) -> RunParameters:
    """Check the notebook's parameters and return them; any missing one takes its default.

    Every problem raises :class:`CourseError` naming the parameter and what it accepts.
    Checking the sizes finds the IMDB data (and downloads it if needed), and checking the
    backbone makes sure its model can be loaded before any training starts.
    """
    from utils.backbone import max_positions, resolve_backbone
    from utils.data import check_sizes, find_imdb

    unknown = sorted(set(parameters) - set(DEFAULTS))
    if unknown:
        raise CourseError(
            f"Unknown parameter {', '.join(unknown)}; the parameters are {', '.join(DEFAULTS)}."
        )
    p = {**DEFAULTS, **parameters}
    _name("experiment_name", p["experiment_name"])
    _name("run_name", p["run_name"])
    for size in ("train_size", "val_size", "test_size"):
        _whole(size, p[size], 2)
    _whole("max_epochs", p["max_epochs"], 1)
    _whole("batch_size", p["batch_size"], 1)
    _whole("seed", p["seed"], 0, 2**32 - 1)
    rate = p["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise CourseError(f"learning_rate must be a number above 0 and at most 1; got {rate!r}.")
    strategy = check_strategy(p["strategy"])
    if p["pooling"] not in POOLINGS:
        raise CourseError(
            f"pooling={p['pooling']!r} is not known. Use 'mean' (the average of the token "
            "vectors, what MiniLM was trained for) or 'pooler' (flash's default: BERT's pooler "
            "output)."
        )
    accelerator = check_accelerator(p["accelerator"])
    backbone = resolve_backbone(p["backbone"])
    _whole("max_length", p["max_length"], 8, max_positions(backbone))
    data = find_imdb()
    check_sizes(data, train_size=p["train_size"], val_size=p["val_size"], test_size=p["test_size"])
    return RunParameters(
        experiment_name=p["experiment_name"],
        run_name=p["run_name"],
        train_size=p["train_size"],
        val_size=p["val_size"],
        test_size=p["test_size"],
        max_epochs=p["max_epochs"],
        batch_size=p["batch_size"],
        learning_rate=float(rate),
        strategy=strategy,
        backbone=backbone,
        pooling=p["pooling"],
        max_length=p["max_length"],
        accelerator=accelerator,
        seed=p["seed"],
        data=data,
    )


def loggable_params(params: RunParameters) -> dict[str, str]:
    """What ``mlflow.log_params`` records for a run: each parameter that shapes it, under the
    name it has in notebook 03's parameters cell, as text.

    The backbone is recorded by a name that means the same on any machine
    (:func:`utils.backbone.portable_name`), never a path into this machine's site-packages;
    a strategy with a value is recorded as its Python literal, ``('freeze_unfreeze', 1)``.
    """
    from utils.backbone import portable_name

    values = {name: getattr(params, name) for name in RUN_PARAMETERS}
    values["backbone"] = portable_name(params.backbone)
    return {name: value if isinstance(value, str) else repr(value) if isinstance(value, tuple)
            else str(value) for name, value in values.items()}


def provenance_tags(params: RunParameters, notebook: str = TRAINING_NOTEBOOK) -> dict[str, str]:
    """The tags that let ``python -m tools.batch rerun`` train a run again: the notebook that
    trains it, the names of the parameters the course logged, and, for a local backbone
    folder, where it lies on this machine."""
    from utils.backbone import FOLDER_TAG, packaged_backbone

    tags = {NOTEBOOK_TAG: notebook, PARAMETERS_TAG: ",".join(RUN_PARAMETERS)}
    if os.path.isdir(params.backbone) and os.path.realpath(params.backbone) != str(packaged_backbone()):
        tags[FOLDER_TAG] = os.path.realpath(params.backbone)
    return tags


def parameters_from_run(run, client=None) -> dict[str, Any]:
    """The notebook parameters that train ``run`` (an MLflow Run made by the course) again.

    The inverse of :func:`loggable_params`: every name listed in the run's
    :data:`PARAMETERS_TAG`, read back as the value the parameters cell would hold (numbers
    as numbers, a strategy with a value as a list, the packaged backbone as None), plus the
    run's experiment and name. Raises :class:`CourseError` when the run was not made by the
    course, or when this machine cannot give it the same backbone.
    """
    import mlflow

    from utils.backbone import FOLDER_TAG, parameter_from_record

    run_id = run.info.run_id
    listed = run.data.tags.get(PARAMETERS_TAG, "")
    if not run.data.tags.get(NOTEBOOK_TAG) or not listed:
        raise CourseError(
            f"Run {run_id} was not made by a course notebook (it has no tags {NOTEBOOK_TAG} and "
            f"{PARAMETERS_TAG}), so its record does not say how to train it again."
        )
    names = [name for name in listed.split(",") if name]
    missing = [name for name in names if name not in run.data.params]
    if missing:
        raise CourseError(f"Run {run_id} lists the parameters {', '.join(missing)} but never "
                          "logged them: it did not finish recording, so it cannot be re-run.")
    values: dict[str, Any] = {}
    for name in names:
        text = run.data.params[name]
        if name == "backbone":
            values[name] = parameter_from_record(text, run.data.tags.get(FOLDER_TAG))
            continue
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # plain words: "freeze", "mean", "auto"
        values[name] = list(value) if isinstance(value, tuple) else value
    # The store the run came from: `client`, else the one MLflow is pointed at.
    experiment = (client or mlflow.MlflowClient()).get_experiment(run.info.experiment_id)
    return {"experiment_name": experiment.name, "run_name": run.info.run_name, **values}


# -- the pieces of a run ------------------------------------------------------------------
def data_folder(params: RunParameters):
    """Write the run's balanced, seeded data subset into the workspace; return its folder."""
    from utils.data import make_subset

    return make_subset(params.train_size, params.val_size, params.test_size,
                       seed=params.seed, data=params.data)


def scratch_folder():
    """Where Lightning may write its own files: the workspace, not the notebooks' folder."""
    from utils.workspace import get_workspace

    return get_workspace().path / "lightning"


def _stopwatch_class():
    import pytorch_lightning as pl

    class Stopwatch(pl.Callback):
        """Times Lightning's fit and test loops, so that the rest of a run is MLflow's."""

        def __init__(self):
            self.seconds = {"fit": 0.0, "test": 0.0}
            self._started = {}

        def _start(self, phase):
            self._started[phase] = time.perf_counter()

        def _stop(self, phase):
            if phase in self._started:
                self.seconds[phase] += time.perf_counter() - self._started.pop(phase)

        def on_fit_start(self, trainer, pl_module):
            self._start("fit")

        def on_fit_end(self, trainer, pl_module):
            self._stop("fit")

        def on_test_start(self, trainer, pl_module):
            self._start("test")

        def on_test_end(self, trainer, pl_module):
            self._stop("test")

    return Stopwatch


def loop_seconds(trainer) -> dict[str, float]:
    """``{"fit": ..., "test": ...}``: the seconds Lightning's training loop (with validation)
    and test loop took, as the stopwatch of :func:`course_callbacks` measured them."""
    watch = next((c for c in trainer.callbacks if type(c).__name__ == "Stopwatch"), None)
    if watch is None:
        raise CourseError("This trainer has no stopwatch: give it callbacks=training.course_callbacks().")
    return dict(watch.seconds)


def time_report(trainer, total_seconds: float) -> str:
    """Split a run's wall time into Lightning's fit and test loops and everything else.

    ``trainer`` has the stopwatch of :func:`course_callbacks`, which times the loops; what is
    left of ``total_seconds`` is set-up and MLflow's own work (logging parameters, metrics,
    the model summary and the model, with its requirements).
    """
    seconds = loop_seconds(trainer)
    loops = seconds["fit"] + seconds["test"]
    rest = max(total_seconds - loops, 0.0)
    return (f"{total_seconds:.1f} s in all: training loop (with validation) {seconds['fit']:.1f} s, "
            f"test loop {seconds['test']:.1f} s, everything else {rest:.1f} s "
            f"({rest / loops:.0%} on top of the loops)")


def _progress_class():
    import pytorch_lightning as pl
    from pytorch_lightning.callbacks import ProgressBarBase

    class EpochProgress(ProgressBarBase):
        """One progress bar for the whole training, and one line per epoch.

        In JupyterLab the bar is a live widget (tqdm.auto with ipywidgets); headless runs
        (``COURSE_HEADLESS`` set by the course's runner and tests) keep only the lines, which
        read the same in an executed notebook. Validation and testing draw no bars.
        """

        def __init__(self, live: bool) -> None:
            super().__init__()
            self.live = live
            self.enabled = True
            self.bar = None
            self._epoch_started = 0.0

        def disable(self) -> None:
            self.enabled = False

        def enable(self) -> None:
            self.enabled = True

        def on_train_start(self, trainer: pl.Trainer, pl_module) -> None:
            if self.enabled and self.live:
                from tqdm.auto import tqdm

                total = trainer.max_epochs * self.total_train_batches
                self.bar = tqdm(total=total, desc="training", unit="step", dynamic_ncols=True)

        def on_train_epoch_start(self, trainer, pl_module) -> None:
            self._epoch_started = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
            if self.bar is not None:
                self.bar.update(1)
                loss = trainer.callback_metrics.get("train_cross_entropy_step")
                if loss is not None:
                    self.bar.set_postfix(loss=f"{float(loss):.3f}", refresh=False)

        def on_train_epoch_end(self, trainer, pl_module) -> None:
            if not self.enabled:
                return
            metrics = trainer.callback_metrics
            shown = [f"{label} {float(metrics[key]):.3f}" for key, label in (
                ("train_cross_entropy_epoch", "training loss"), ("val_cross_entropy", "validation loss"),
                ("val_accuracy", "validation accuracy")) if key in metrics]
            line = (f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}: "
                    f"{self.total_train_batches} steps in {time.perf_counter() - self._epoch_started:.0f} s"
                    + "".join(f", {part}" for part in shown))
            (self.bar.write if self.bar is not None else print)(line)

        def on_train_end(self, trainer, pl_module) -> None:
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return EpochProgress


def quiet_libraries() -> None:
    """Keep the notices of the libraries under the run out of the notebook: Lightning's
    GPU/TPU banner, "Global seed set" and "`Trainer.fit` stopped", the progress bar that
    Hugging Face datasets draws per split while flash tokenizes, and flash 0.8.2 tripping
    over its own deprecation of how it passes transforms. Warnings worth reading still show."""
    import datasets

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.seed",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    datasets.disable_progress_bars()
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*InputTransform.*")


def course_callbacks() -> list:
    """The trainer's callbacks: a stopwatch of the training and test loops (see
    :func:`time_report`) and the progress: a live bar in JupyterLab, a line per epoch."""
    live = not os.environ.get(HEADLESS_ENV) and "ipykernel" in sys.modules
    return [_stopwatch_class()(), _progress_class()(live)]


def release_memory() -> None:
    """Free what nothing refers to any more, and give the memory back to the system.

    ``gc.collect()`` frees unreachable Python objects; the C library would still keep the
    freed memory for the process's later use, so on Linux it is asked to return it
    (``malloc_trim``). Another notebook's kernel can then use it.
    """
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not Linux with glibc: nothing more to do
        pass


def weights_digest(model) -> str:
    """A short fingerprint of every weight of a model: equal digests, equal weights."""
    import hashlib

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


# -- logging the model without requirement inference -----------------------------------------
# What loading a logged classifier imports, pinned to the installed versions. MLflow's
# inference of this list loads the model again in a second Python process (several seconds
# and hundreds of MB) and still misses pytorch-lightning and transformers, without which the
# pickle cannot be loaded.
MODEL_REQUIREMENTS = (
    "mlflow", "torch", "lightning-flash", "pytorch-lightning", "torchmetrics",
    "transformers", "tokenizers", "numpy", "pandas", "cloudpickle", "setuptools",
)


def pinned_requirements(distributions: Iterable[str] = MODEL_REQUIREMENTS) -> list[str]:
    """``name==version`` of each installed distribution (a local label such as +cpu dropped)."""
    pins = []
    for name in distributions:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
        pins.append(f"{name}=={version.split('+')[0]}")
    return pins
