"""The release gate: evaluate a candidate on the held-out test set; register it as the new
champion only if it clears the release bar.

    python evaluate.py <run id>                   # that run's best checkpoint
    python evaluate.py models:/m-0123...          # any model URI
    python evaluate.py <run id> --min-accuracy 0.7 --tolerance 0.01

The candidate and the current champion (models:/<name>@champion) are evaluated the same way,
with mlflow.models.evaluate on all of test.csv.gz, in child runs of one "evaluation" run.
One line says why the candidate passed or not.
Exit code 0: passed, registered, alias "champion" moved to it; 1: refused, nothing changed;
2: bad input.
"""

import argparse
import sys
from pathlib import Path

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.models import MetricThreshold
from mlflow.models.evaluation.validation import ModelValidationFailedException

from train import (EXPERIMENT, HERE, BadInput, OneLineErrors, as_dataset, best_checkpoint,
                   log_new_params, read_split, use_tracking)

# The release bar, in one place: the accuracy on the 350 held-out reviews must be at least
# MIN_ACCURACY, and at least the champion's minus TOLERANCE (0.02 is about the noise of 350
# reviews: the standard error of an accuracy near 0.75 is 0.023).
METRIC = "accuracy_score"  # mlflow.models.evaluate's name for a classifier's accuracy
MIN_ACCURACY = 0.6
TOLERANCE = 0.02
MODEL_NAME = "imdb-sentiment-project"
CHAMPION = "champion"
# No SHAP explanations: slow, and they need a package the model does not.
EVALUATOR_CONFIG = {"log_model_explainability": False, "pos_label": "positive"}


def release_bar(champion_accuracy: float | None, min_accuracy: float, tolerance: float) -> float:
    if champion_accuracy is None:
        return min_accuracy
    return max(min_accuracy, champion_accuracy - tolerance)


def candidate_uri(candidate: str) -> str:
    """A model URI as given, or a run id's best checkpoint (as train.py chose it)."""
    if ":/" in candidate:
        return candidate
    try:
        run = mlflow.get_run(candidate)
    except MlflowException:
        raise BadInput(f"no run {candidate!r} in {mlflow.get_tracking_uri()}: give the run_id "
                       f"that train.py printed, or a models:/ URI") from None
    best = best_checkpoint(run)
    if best is None:
        raise BadInput(f"run {candidate} logged no model: give a run of train.py or of a trial")
    return f"models:/{best.model_id}"


def champion_version(name: str) -> str | None:
    """The registered version that holds the champion alias, if any."""
    models = mlflow.MlflowClient().search_registered_models(filter_string=f"name = '{name}'")
    return models[0].aliases.get(CHAMPION) if models else None


def evaluate_model(uri: str, test_set, run_name: str):
    """mlflow.models.evaluate in a child run: accuracy_score, f1_score, ... and a confusion matrix."""
    with mlflow.start_run(run_name=run_name, nested=True):
        return mlflow.models.evaluate(uri, test_set, model_type="classifier",
                                      evaluator_config=EVALUATOR_CONFIG)


def passes(candidate_result, champion_result, bar: float) -> bool:
    # MetricThreshold's min_absolute_change must be > 0: it asks the candidate to beat the
    # baseline by that much. A bar that tolerates noise is a plain threshold, computed above
    # from the champion's score; MLflow then compares only the candidate with it.
    thresholds = {METRIC: MetricThreshold(threshold=bar, greater_is_better=True)}
    try:
        mlflow.validate_evaluation_results(thresholds, candidate_result=candidate_result,
                                           baseline_result=champion_result)
    except ModelValidationFailedException:
        return False
    return True


def gate(args: argparse.Namespace) -> bool:
    """Evaluate, compare, print the verdict line; register the candidate if it passed."""
    test_path = Path(args.data_dir) / "test.csv.gz"
    test_set = as_dataset(read_split(args.data_dir, "test"), test_path)
    uri = candidate_uri(args.candidate)
    champion = champion_version(args.name)
    with mlflow.start_run(run_name="evaluation"):
        log_new_params({"candidate": args.candidate, "candidate_model": uri, "name": args.name,
                        "champion_version": champion, "min_accuracy": args.min_accuracy,
                        "tolerance": args.tolerance})
        candidate_result = evaluate_model(uri, test_set, "candidate")
        champion_result = champion_accuracy = None
        if champion:
            champion_result = evaluate_model(f"models:/{args.name}@{CHAMPION}", test_set,
                                             f"champion version {champion}")
            champion_accuracy = champion_result.metrics[METRIC]
        bar = release_bar(champion_accuracy, args.min_accuracy, args.tolerance)
        accuracy = candidate_result.metrics[METRIC]
        passed = passes(candidate_result, champion_result, bar)
        mlflow.log_metrics({METRIC: accuracy, "release_bar": bar})

        why = (f"champion version {champion}: {champion_accuracy:.4f} - tolerance {args.tolerance}"
               if champion else "no champion yet") + f"; floor {args.min_accuracy}"
        if passed:
            version = mlflow.register_model(uri, args.name).version
            mlflow.MlflowClient().set_registered_model_alias(args.name, CHAMPION, version)
            outcome = f"registered {args.name} version {version} as {CHAMPION}"
        else:
            version = None
            outcome = f"{CHAMPION} stays version {champion}" if champion else "nothing registered"
        mlflow.set_tags({"verdict": "passed" if passed else "refused",
                         "registered_version": str(version)})
    sign, verdict = (">=", "PASSED") if passed else ("<", "REFUSED")
    print(f"{verdict}: {METRIC} {accuracy:.4f} {sign} bar {bar:.4f} ({why}); {outcome}")
    return passed


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(description="Evaluate a candidate model; register it if it clears the bar.")
    parser.add_argument("candidate", help="a run id (its best checkpoint) or a models:/ URI")
    parser.add_argument("--name", default=MODEL_NAME, help="registered model name")
    parser.add_argument("--min-accuracy", type=float, default=MIN_ACCURACY,
                        help="the floor, whatever the champion")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE,
                        help="how far below the champion's accuracy a candidate may be")
    parser.add_argument("--data-dir", default=str(HERE / "data"), help="folder with test.csv.gz")
    parser.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment name")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        if not 0 <= args.min_accuracy <= 1 or args.tolerance < 0:
            raise BadInput("give --min-accuracy between 0 and 1 and a --tolerance of 0 or more")
        use_tracking(args.experiment)
        return 0 if gate(args) else 1
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
