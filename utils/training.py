"""Training the course's sentiment classifier, and using the model a run logged.

Notebook 03 builds its run from these pieces, cell by cell:

>>> params = validate_parameters(train_size=500, val_size=100, test_size=100)
>>> datamodule = make_datamodule(params)
>>> model = make_model(params, datamodule)
>>> trainer = make_trainer(params)

and :func:`train_and_test` runs the same two calls the notebook shows
(``trainer.finetune`` then ``trainer.test``). :func:`ensure_example_run` uses the same code
to give later notebooks a finished, autologged run without running notebook 03 first,
and :func:`predict_sentiment` classifies reviews with the model any such run logged.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.util
import os
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
    "test_size": 100,
    "max_epochs": 1,
    "batch_size": 32,
    "learning_rate": 0.01,
    "strategy": "freeze",
    "backbone": None,
    "max_length": 128,
    "accelerator": "auto",
    "seed": 42,
}

# Fine-tuning strategies of lightning-flash that take no extra value, and those that do.
SIMPLE_STRATEGIES = ("freeze", "no_freeze")
STRATEGY_EXAMPLES = {
    "freeze_unfreeze": "('freeze_unfreeze', 1): unfreeze the backbone at epoch 1",
    "unfreeze_milestones": "('unfreeze_milestones', ((1, 2), 2)): unfreeze 2 layers at "
    "epoch 1 and all at epoch 2",
}

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
    from flash.core.finetuning import _FINETUNING_STRATEGIES_REGISTRY

    known = _FINETUNING_STRATEGIES_REGISTRY.available_keys()
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
        max_length=p["max_length"],
        accelerator=accelerator,
        seed=p["seed"],
        data=data,
    )


# -- the pieces of a run ------------------------------------------------------------------
def data_folder(params: RunParameters):
    """Write the run's balanced, seeded data subset into the workspace; return its folder."""
    from utils.data import make_subset

    return make_subset(params.train_size, params.val_size, params.test_size,
                       seed=params.seed, data=params.data)


def make_datamodule(params: RunParameters):
    """flash's data module over the run's subset (see :func:`data_folder`)."""
    import torch
    from flash.text import TextClassificationData

    folder = data_folder(params)
    with warnings.catch_warnings():
        # flash 0.8.2 trips over its own deprecation of how it passes default transforms.
        warnings.filterwarnings("ignore", category=FutureWarning, message=".*InputTransform.*")
        return TextClassificationData.from_csv(
            "review",
            "sentiment",
            train_file=str(folder / "train.csv"),
            val_file=str(folder / "valid.csv"),
            test_file=str(folder / "test.csv"),
            batch_size=params.batch_size,
            # Pinned memory only speeds up copies to a GPU; on a CPU torch warns about it.
            pin_memory=torch.cuda.is_available(),
        )


def make_model(params: RunParameters, datamodule):
    """Seed every random generator with ``params.seed``, then build the classifier."""
    import pytorch_lightning as pl
    from flash.text import TextClassifier

    pl.seed_everything(params.seed, workers=True)
    # flash's Hugging Face adapter switches off every warning of the process (and of its
    # subprocesses, through PYTHONWARNINGS); keep the reader's warnings as they were.
    saved = os.environ.get("PYTHONWARNINGS")
    with warnings.catch_warnings():
        model = TextClassifier(
            backbone=params.backbone,
            labels=datamodule.labels,
            max_length=params.max_length,
            learning_rate=params.learning_rate,
        )
    if saved is None:
        os.environ.pop("PYTHONWARNINGS", None)
    else:
        os.environ["PYTHONWARNINGS"] = saved
    return model


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


def time_report(trainer, total_seconds: float) -> str:
    """Split a run's wall time into Lightning's fit and test loops and everything else.

    ``trainer`` comes from :func:`make_trainer`, whose stopwatch times the loops; what is
    left of ``total_seconds`` is set-up and MLflow's own work (logging parameters, metrics,
    the model summary and the model, with its requirements).
    """
    watch = next((c for c in trainer.callbacks if type(c).__name__ == "Stopwatch"), None)
    if watch is None:
        raise CourseError("This trainer was not made by utils.training.make_trainer; it has no stopwatch.")
    loops = watch.seconds["fit"] + watch.seconds["test"]
    rest = max(total_seconds - loops, 0.0)
    return (f"{total_seconds:.1f} s in all: training loop (with validation) {watch.seconds['fit']:.1f} s, "
            f"test loop {watch.seconds['test']:.1f} s, everything else {rest:.1f} s "
            f"({rest / loops:.0%} on top of the loops)")


def make_trainer(params: RunParameters):
    """A ``flash.Trainer`` for the run; ``params.accelerator`` is passed on unchanged.

    MLflow records the run, so Lightning's own logger and checkpoint files are turned off
    (they would otherwise fill a ``lightning_logs/`` folder beside the notebook). A
    stopwatch callback times the training and test loops (see :func:`time_report`).
    """
    import flash
    from lightning_fabric.utilities.exceptions import MisconfigurationException

    from utils.workspace import get_workspace

    try:
        return flash.Trainer(
            max_epochs=params.max_epochs,
            accelerator=params.accelerator,
            logger=False,
            enable_checkpointing=False,
            # The check runs two validation batches before training; our code is tested.
            num_sanity_val_steps=0,
            default_root_dir=str(get_workspace().path / "lightning"),
            callbacks=[_stopwatch_class()()],
        )
    except MisconfigurationException as error:
        raise CourseError(
            f"accelerator={params.accelerator!r} cannot be used on this machine: {error} "
            "Use accelerator='auto', which falls back to the CPU."
        ) from None


def train_and_test(params: RunParameters, datamodule=None, model=None, trainer=None) -> dict:
    """Fine-tune and test inside the active MLflow run; return the test metrics.

    The same two calls as notebook 03: ``trainer.finetune(...)`` then ``trainer.test(...)``.
    Pieces not given are built with :func:`make_datamodule`, :func:`make_model` and
    :func:`make_trainer`.
    """
    import mlflow

    if mlflow.active_run() is None:
        raise CourseError("train_and_test runs inside `with mlflow.start_run(...)`; start a run first.")
    datamodule = datamodule or make_datamodule(params)
    model = model or make_model(params, datamodule)
    trainer = trainer or make_trainer(params)
    trainer.finetune(model, datamodule=datamodule, strategy=params.strategy)
    results = trainer.test(model, datamodule=datamodule)
    return results[0] if results else {}


# -- runs and the models they logged -------------------------------------------------------
def logged_model_of_run(run_id: str, client=None):
    """The model a run logged (an MLflow 3 ``LoggedModel``), or None when it logged none."""
    import mlflow

    client = client or mlflow.MlflowClient()
    run = client.get_run(run_id)
    outputs = run.outputs.model_outputs if run.outputs else []
    ready = [client.get_logged_model(output.model_id) for output in outputs]
    ready = [model for model in ready if str(model.status).upper().endswith("READY")]
    # Autologging names its model "model"; prefer it if a run logged several.
    ready.sort(key=lambda model: model.name != "model")
    return ready[0] if ready else None


@contextlib.contextmanager
def _workspace_lock(name: str):
    """Let one process at a time train the example run of a workspace."""
    from utils.workspace import get_workspace

    with open(get_workspace().path / f".{name}.lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def find_example_run(experiment_name: str = DEFAULTS["experiment_name"],
                     run_name: str = DEFAULTS["run_name"]) -> str | None:
    """The newest FINISHED run of that name in that experiment that logged a model."""
    import mlflow

    client = mlflow.MlflowClient()
    experiment = client.get_experiment_by_name(experiment_name)
    if experiment is None:
        return None
    by_name = "" if "'" in run_name else f"attributes.run_name = '{run_name}' and "
    runs = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"{by_name}attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        max_results=1000,
    )
    for run in runs:
        if run.info.run_name == run_name and logged_model_of_run(run.info.run_id, client) is not None:
            return run.info.run_id
    return None


def ensure_example_run(experiment_name: str = DEFAULTS["experiment_name"],
                       run_name: str = DEFAULTS["run_name"], **parameters: Any) -> str:
    """The id of a finished, autologged run with a logged model; trains one if there is none.

    Looks in the current tracking store (the course workspace unless the caller pointed
    MLflow elsewhere) for the newest FINISHED run named ``run_name`` in
    ``experiment_name`` that logged a model, such as the one notebook 03 records. When
    there is none it trains one with notebook 03's code and defaults; ``parameters``
    (``train_size=40``, ...) change them. An existing run is returned whatever sizes it
    was trained with.
    """
    import mlflow
    from mlflow.tracking._tracking_service.utils import is_tracking_uri_set
    from mlflow.utils.autologging_utils import autologging_is_disabled

    from utils.workspace import use_workspace

    if not is_tracking_uri_set():
        use_workspace()
    found = find_example_run(experiment_name, run_name)
    if found:
        return found
    params = validate_parameters(experiment_name=experiment_name, run_name=run_name, **parameters)
    if mlflow.active_run() is not None:
        raise CourseError(
            f"Run {mlflow.active_run().info.run_id} is still active; end it (mlflow.end_run()) "
            "before asking for the example run."
        )
    with _workspace_lock("example-run"):
        found = find_example_run(experiment_name, run_name)  # another process may have won
        if found:
            return found
        autolog_was_off = autologging_is_disabled("pytorch")
        experiment = mlflow.set_experiment(experiment_name)
        print(f"No finished run {run_name!r} in experiment {experiment_name!r}: training one "
              f"({params.train_size}/{params.val_size}/{params.test_size} reviews, "
              f"{params.max_epochs} epoch(s)).")
        mlflow.pytorch.autolog()
        try:
            with mlflow.start_run(experiment_id=experiment.experiment_id, run_name=run_name) as run:
                train_and_test(params)
        finally:
            if autolog_was_off:
                mlflow.pytorch.autolog(disable=True)
        return run.info.run_id


# -- predictions ----------------------------------------------------------------------------
_loaded: dict[str, Any] = {}


def load_classifier(model_uri: str):
    """Load a logged classifier with ``mlflow.pytorch.load_model`` (on the CPU).

    ``runs:/<run_id>/model`` works in MLflow 3 as it did in 1.x: MLflow finds the model
    the run logged under the name ``model``. ``models:/<model_id>`` (the ``m-...`` id of
    a logged model) and ``models:/<name>/<version>`` of the registry work too. Models
    named by an immutable URI are kept in memory for the next call.
    """
    import mlflow
    from mlflow.exceptions import MlflowException

    if not isinstance(model_uri, str) or not model_uri.strip():
        raise CourseError(f"model_uri must be a string such as 'runs:/<run_id>/model'; got {model_uri!r}.")
    if model_uri in _loaded:
        return _loaded[model_uri]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model = mlflow.pytorch.load_model(model_uri, map_location="cpu")
    except (MlflowException, OSError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CourseError(
            f"Cannot load a model from {model_uri!r}: {first_line} Use 'runs:/<run_id>/model' "
            "for the model a run autologged, or 'models:/<model_id>'."
        ) from None
    if not hasattr(model, "adapter") or "labels" not in getattr(model, "hparams", {}):
        raise CourseError(f"{model_uri!r} is not a text classifier trained by this course.")
    model.eval()
    immutable = model_uri.startswith("runs:/") or model_uri.startswith("models:/m-") or (
        model_uri.startswith("models:/") and model_uri.rsplit("/", 1)[-1].isdigit()
    )
    if immutable:
        _loaded.clear()  # one model in memory is enough (each is ~90 MB)
        _loaded[model_uri] = model
    return model


def predict_sentiment(model_uri: str, reviews: Iterable[str] | str, batch_size: int = 32) -> list[str]:
    """Classify reviews with a logged model: ``"positive"`` or ``"negative"`` per review, in order.

    ``model_uri`` is ``runs:/<run_id>/model`` or ``models:/<model_id>`` (see
    :func:`load_classifier`). The reviews are tokenized as in training (the tokenizer is
    saved inside the model) and classified ``batch_size`` at a time. A single string is
    one review.
    """
    import torch

    reviews = [reviews] if isinstance(reviews, str) else list(reviews)
    bad = [i for i, review in enumerate(reviews) if not isinstance(review, str)]
    if bad:
        raise CourseError(f"reviews must be strings; item {bad[0]} is {reviews[bad[0]]!r}.")
    _whole("batch_size", batch_size, 1)
    if not reviews:
        return []
    model = load_classifier(model_uri)
    labels = list(model.hparams["labels"])  # index i of the output is labels[i]
    tokenizer = model.adapter.collate_fn.tokenizer
    network = model.adapter.model
    device = next(network.parameters()).device
    predictions: list[str] = []
    with torch.inference_mode():
        for start in range(0, len(reviews), batch_size):
            batch = tokenizer(
                reviews[start:start + batch_size],
                max_length=model.hparams.get("max_length", 128),
                truncation=True,
                padding=True,
                return_tensors="pt",
            ).to(device)
            logits = network(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            predictions += [labels[i] for i in logits.argmax(dim=-1).tolist()]
    return predictions


# -- logging the model without requirement inference -----------------------------------------
# What loading a logged classifier imports, pinned to the installed versions. MLflow's
# inference of this list runs the model in a subprocess (about 10 s) and still misses
# pytorch-lightning and transformers, without which the pickle cannot be loaded.
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


def log_model_pinned(model, name: str = "model", **kwargs):
    """``mlflow.pytorch.log_model`` with :func:`pinned_requirements` instead of inference."""
    import mlflow

    kwargs.setdefault("pip_requirements", pinned_requirements())
    kwargs.setdefault("serialization_format", "pickle")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mlflow.pytorch.log_model(model, name=name, **kwargs)
