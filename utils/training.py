"""What notebook 03's run needs besides the code it shows (its ``#@save`` cells, utils.ch03):
checked parameters, the data subset, quiet libraries, the trainer's callbacks, the pinned
requirements of its model, and the record that lets ``tools.batch rerun`` train it again.
"""

from __future__ import annotations

import ast
import logging
import os
import sys
import warnings
from dataclasses import dataclass, field, fields
from importlib import metadata
from typing import Any

from utils.errors import CourseError
from utils.i18n import gettext as _

# The tags of a run's record: the notebook that trains it, the names of the parameters the
# course logged (the rest are autologging's), and, for a re-run, the run it repeats.
TRAINING_NOTEBOOK = "03_first_autologged_run.ipynb"
NOTEBOOK_TAG = "course.notebook"
PARAMETERS_TAG = "course.parameters"
RERUN_TAG = "course.rerun_of"
# Set by the course's notebook runner and tests: no live progress bar, a line per epoch.
HEADLESS_ENV = "COURSE_HEADLESS"


@dataclass(frozen=True)
class RunParameters:
    """The checked parameters of one run of notebook 03 (``params.train_size`` ...), with
    their defaults: those of the notebook's parameters cell (a test checks that they agree)."""

    experiment_name: str = "dl_model_chapter02"
    run_name: str = "chapter02"
    train_size: int = 500
    val_size: int = 100
    test_size: int = 200
    max_epochs: int = 1
    batch_size: int = 16
    learning_rate: float = 0.03
    strategy: str | tuple = "freeze"
    backbone: str | None = None
    pooling: str = "mean"
    max_length: int = 128
    accelerator: str = "auto"
    seed: int = 42
    data: Any = field(default=None, repr=False, compare=False)  # the IMDB folder they fit


#: The parameters of the parameters cell, in its order.
PARAMETERS = tuple(f.name for f in fields(RunParameters) if f.name != "data")
#: Those that shape a run (experiment_name and run_name only say where it goes).
RUN_PARAMETERS = tuple(name for name in PARAMETERS if name not in ("experiment_name", "run_name"))


def defaults() -> dict[str, Any]:
    """The parameters cell's names and default values."""
    return {f.name: f.default for f in fields(RunParameters) if f.name != "data"}


def _whole(name: str, value: object, minimum: int, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise CourseError(_("{name} must be a whole number; got {value!r}.").format(
            name=name, value=value))
    if value < minimum or (maximum is not None and value > maximum):
        wrong = (_("{name} must be from {minimum} to {maximum}; got {value}.") if maximum is not None
                 else _("{name} must be >= {minimum}; got {value}."))
        raise CourseError(wrong.format(name=name, minimum=minimum, maximum=maximum, value=value))
    return value


def check_strategy(strategy: object) -> str | tuple:
    """``"freeze"`` trains only the new layer, ``"no_freeze"`` the whole network, and
    ``("freeze_unfreeze", epoch)`` unfreezes the backbone at that epoch (papermill: a list)."""
    if strategy in ("freeze", "no_freeze"):
        return strategy
    if isinstance(strategy, (list, tuple)) and len(strategy) == 2 \
            and strategy[0] == "freeze_unfreeze":
        return ("freeze_unfreeze", _whole(_("the unfreeze epoch of strategy"), strategy[1], 0))
    raise CourseError(_(
        "strategy={strategy!r} is not a fine-tuning strategy of the course. Use 'freeze' (train "
        "the new layer only), 'no_freeze' (the whole network) or ('freeze_unfreeze', 1) "
        "(unfreeze the backbone at epoch 1)."
    ).format(strategy=strategy))


def check_accelerator(accelerator: object) -> str:
    """Check the name of a Lightning accelerator (``"auto"`` picks a GPU when there is one)."""
    from pytorch_lightning.accelerators import AcceleratorRegistry

    known = ["gpu", *AcceleratorRegistry.available_accelerators()]
    if accelerator != "auto" and accelerator not in known:
        raise CourseError(_("accelerator={accelerator!r} is not an accelerator Lightning knows. "
                            "Use 'auto' (a GPU if there is one, else the CPU), or one of "
                            "{known}.").format(accelerator=accelerator, known=", ".join(known)))
    name = "cuda" if accelerator == "gpu" else accelerator
    if name != "auto" and not AcceleratorRegistry[name]["accelerator"].is_available():
        raise CourseError(_("accelerator={accelerator!r} cannot be used on this machine: it has "
                            "no {device} device. Use accelerator='auto', which falls back to "
                            "the CPU.").format(accelerator=accelerator, device=name.upper()))
    return accelerator


def validate_parameters(**parameters: Any) -> RunParameters:
    """Check the notebook's parameters, before any training, and return them; a missing one
    takes its default. Each problem raises a CourseError naming the parameter and what it takes.
    """
    from utils.backbone import max_positions, resolve_backbone
    from utils.data import check_sizes, find_imdb

    unknown = sorted(set(parameters) - set(PARAMETERS))
    if unknown:
        raise CourseError(_("Unknown parameter {unknown}; the parameters are {parameters}.").format(
            unknown=", ".join(unknown), parameters=", ".join(PARAMETERS)))
    p = {**defaults(), **parameters}
    for name in ("experiment_name", "run_name"):
        if not isinstance(p[name], str) or not p[name].strip():
            raise CourseError(_("{name} must be a non-empty string; got {value!r}.").format(
                name=name, value=p[name]))
    for size in ("train_size", "val_size", "test_size"):
        _whole(size, p[size], 2)
    _whole("max_epochs", p["max_epochs"], 1)
    _whole("batch_size", p["batch_size"], 1)
    _whole("seed", p["seed"], 0, 2**32 - 1)
    rate = p["learning_rate"]
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or not 0 < rate <= 1:
        raise CourseError(_("learning_rate must be a number above 0 and at most 1; "
                            "got {rate!r}.").format(rate=rate))
    if p["pooling"] not in ("mean", "pooler"):
        raise CourseError(_("pooling={pooling!r} is not known. Use 'mean' (the average of the token "
                            "vectors, what MiniLM was trained for) or 'pooler' (BERT's pooler "
                            "output).").format(pooling=p["pooling"]))
    p.update(strategy=check_strategy(p["strategy"]), backbone=resolve_backbone(p["backbone"]),
             accelerator=check_accelerator(p["accelerator"]), learning_rate=float(rate))
    _whole("max_length", p["max_length"], 8, max_positions(p["backbone"]))
    data = find_imdb()
    check_sizes(data, train_size=p["train_size"], val_size=p["val_size"], test_size=p["test_size"])
    return RunParameters(**p, data=data)


def loggable_params(params: RunParameters) -> dict[str, str]:
    """What ``mlflow.log_params`` records: each parameter that shapes the run, as text; the
    packaged backbone by its pip package and version (not a path), a strategy with a value
    as its Python literal, ``('freeze_unfreeze', 1)``."""
    from utils.backbone import portable_name

    values = {name: getattr(params, name) for name in RUN_PARAMETERS}
    values["backbone"] = portable_name(params.backbone)
    return {name: v if isinstance(v, str) else repr(v) for name, v in values.items()}


def provenance_tags(params: RunParameters, notebook: str = TRAINING_NOTEBOOK) -> dict[str, str]:
    """The tags that let ``python -m tools.batch rerun`` train a run again."""
    return {NOTEBOOK_TAG: notebook, PARAMETERS_TAG: ",".join(RUN_PARAMETERS)}


def parameters_from_run(run, client=None) -> dict[str, Any]:
    """The notebook parameters that train ``run`` (made by the course) again: the inverse of
    :func:`loggable_params`, plus the run's experiment and name. Raises a CourseError when the
    course did not make the run, or this machine cannot give it the same backbone."""
    import mlflow

    from utils.backbone import parameter_from_record

    run_id = run.info.run_id
    listed = run.data.tags.get(PARAMETERS_TAG, "")
    if not run.data.tags.get(NOTEBOOK_TAG) or not listed:
        raise CourseError(_(
            "Run {run_id} was not made by a course notebook (it has no tags {notebook_tag} and "
            "{parameters_tag}), so its record does not say how to train it again."
        ).format(run_id=run_id, notebook_tag=NOTEBOOK_TAG, parameters_tag=PARAMETERS_TAG))
    names = [name for name in listed.split(",") if name]
    missing = [name for name in names if name not in run.data.params]
    if missing:
        raise CourseError(_("Run {run_id} lists the parameters {missing} but never logged them: it "
                            "did not finish recording, so it cannot be re-run.").format(
                                run_id=run_id, missing=", ".join(missing)))
    values: dict[str, Any] = {}
    for name in names:
        text = run.data.params[name]
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # plain words: "freeze", "mean", "auto", a hub id
        values[name] = list(value) if isinstance(value, tuple) else value
    if "backbone" in values:
        values["backbone"] = parameter_from_record(run.data.params["backbone"])
    experiment = (client or mlflow.MlflowClient()).get_experiment(run.info.experiment_id)
    return {"experiment_name": experiment.name, "run_name": run.info.run_name, **values}


def data_folder(params: RunParameters):
    """Write the run's balanced, seeded data subset into the workspace; return its folder."""
    from utils.data import make_subset

    return make_subset(params.train_size, params.val_size, params.test_size,
                       seed=params.seed, data=params.data)


def scratch_folder():
    """Where Lightning may write its own files: the workspace, not the notebooks' folder."""
    from utils.workspace import get_workspace

    return get_workspace().path / "lightning"


def course_callbacks() -> list:
    """Lightning's progress bar (in JupyterLab; not in headless runs), and a line per epoch."""
    from pytorch_lightning.callbacks import LambdaCallback, TQDMProgressBar

    # Defined here, not at the top level: the logged model pickles its trainer, and cloudpickle
    # copies a local function, so loading the model never needs `utils`.
    def print_epoch(trainer, module) -> None:
        metrics = trainer.callback_metrics
        shown = [f", {label} {float(metrics[key]):.3f}" for key, label in (
            ("train_cross_entropy_epoch", "training loss"),
            ("val_cross_entropy", "validation loss"),
            ("val_accuracy", "validation accuracy")) if key in metrics]
        epoch = f"epoch {trainer.current_epoch + 1}/{trainer.max_epochs}"
        print(epoch + "".join(shown), flush=True)

    live = not os.environ.get(HEADLESS_ENV) and "ipykernel" in sys.modules
    return [TQDMProgressBar(refresh_rate=1 if live else 0),
            LambdaCallback(on_train_epoch_end=print_epoch)]


def quiet_libraries() -> None:
    """Silence what libraries below MLflow print and only their authors can act on: numpy's
    deprecations in lightning-flash 0.8.2, setuptools' ``pkg_resources``, MLflow 3.17
    registering its local dataset source twice, Lightning's banners, the progress bars of
    Hugging Face datasets, and flash tripping over its own deprecation."""
    warnings.filterwarnings("ignore", message=r"In the future `np\.(object|bool)`", category=FutureWarning)
    warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
    warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted in multiple ways")
    warnings.filterwarnings("ignore", category=FutureWarning, message=".*InputTransform.*")
    import datasets

    for name in ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.seed",
                 "lightning_fabric.utilities.rank_zero"):
        logging.getLogger(name).setLevel(logging.WARNING)
    datasets.disable_progress_bars()


def release_memory() -> None:
    """Free unreachable objects, and ask the C library (glibc) to give freed memory back to
    the system, so that another notebook's kernel can use it."""
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


# What loading a logged classifier imports. MLflow's inference of this list loads the model
# again in a second process (seconds, hundreds of MB) and still misses pytorch-lightning and
# transformers, without which the pickle cannot be loaded.
MODEL_REQUIREMENTS = (
    "mlflow", "torch", "lightning-flash", "pytorch-lightning", "torchmetrics",
    "transformers", "tokenizers", "numpy", "pandas", "cloudpickle", "setuptools",
)


def pinned_requirements() -> list[str]:
    """``name==version`` of each installed one of MODEL_REQUIREMENTS (a label like +cpu dropped)."""
    pins = []
    for name in MODEL_REQUIREMENTS:
        try:
            pins.append(f"{name}=={metadata.version(name).split('+')[0]}")
        except metadata.PackageNotFoundError:
            continue
    return pins
