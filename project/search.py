"""Search the learning rate and the number of trained MiniLM layers with Optuna.

    python search.py                      # 6 trials at small sizes: a few minutes on 2 CPU cores
    python search.py --study team-1 --storage postgresql://...   # each worker, same command

Each trial is one child run of train.py's `train` under one parent run; a trial that does worse
than the median of the earlier ones after an epoch is pruned (its run ends KILLED). Workers
started with the same --study and --storage share the trials and the parent run: give each
its own --seed (the same seed draws the same random trials), and start the first a few
seconds ahead when the stores are new SQLite files (two processes cannot create MLflow's
tables at once).
"""

import argparse
import sys
import time

import mlflow
import optuna
from optuna.trial import TrialState

from train import EXPERIMENT, HERE, BadInput, OneLineErrors, check_config, train, use_tracking

PARENT = "mlflow_parent_run_id"  # the study's user attribute that holds the parent run's id


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrors(description="Optuna search over train.py, recorded in MLflow.")
    parser.add_argument("--n-trials", type=int, default=6, help="trials in the study, all workers together")
    parser.add_argument("--study", default="",
                        help="study name, the same for every worker; empty: a new study")
    parser.add_argument("--storage", default="",
                        help="Optuna storage URL, e.g. postgresql://... for a team; "
                             "empty: optuna.db in this folder")
    parser.add_argument("--seed", type=int, default=0, help="the sampler's seed, one per worker")
    # Each trial is smaller than train.py's defaults, so that the search takes minutes.
    parser.add_argument("--epochs", type=int, default=3, help="per trial")
    parser.add_argument("--train-size", type=int, default=200, help="per trial")
    parser.add_argument("--valid-size", type=int, default=128, help="per trial")
    parser.add_argument("--max-length", type=int, default=64, help="per trial")
    parser.add_argument("--batch-size", type=int, default=16, help="per trial")
    parser.add_argument("--data-dir", default=str(HERE / "data"), help="folder of the CSV files")
    parser.add_argument("--experiment", default=EXPERIMENT, help="MLflow experiment name")
    return parser


def trial_params(trial: optuna.Trial, args: argparse.Namespace) -> dict:
    """The search space (learning rates down to ones that learn nothing in 3 epochs: those get
    pruned) and the fixed part of every trial's configuration."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 1e-2, log=True),
        "unfreeze_layers": trial.suggest_int("unfreeze_layers", 0, 2),
        "epochs": args.epochs, "train_size": args.train_size, "valid_size": args.valid_size,
        "max_length": args.max_length, "batch_size": args.batch_size, "data_dir": args.data_dir,
        "run_name": f"trial-{trial.number}",
    }


def objective(trial: optuna.Trial, args: argparse.Namespace, parent_run_id: str) -> float:
    accuracies = []

    def after_epoch(epoch: int, accuracy: float) -> None:
        accuracies.append(accuracy)
        if epoch == 1:
            trial.set_user_attr("mlflow_run_id", mlflow.active_run().info.run_id)
        trial.report(accuracy, epoch)
        if trial.should_prune():
            mlflow.end_run("KILLED")  # stopped on purpose: KILLED, not FAILED
            raise optuna.TrialPruned(f"pruned after epoch {epoch}")

    train(trial_params(trial, args), on_epoch_end=after_epoch, parent_run_id=parent_run_id)
    return max(accuracies)  # the best checkpoint's, which train.py picks


def open_study(args: argparse.Namespace) -> tuple[optuna.Study, bool]:
    """The study, and whether this worker created it (and so makes the parent run)."""
    # Trials 0 to n_startup_trials - 1 are drawn at random (seeded); TPE picks the others
    # from what those scored. A third of a small budget, at least 2, leaves TPE some trials.
    sampler = optuna.samplers.TPESampler(n_startup_trials=max(2, args.n_trials // 3), seed=args.seed)
    # Prune from the third trial on: after each epoch, below the median of earlier trials.
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    try:
        # Creating is atomic in the storage: exactly one worker gets here first.
        study = optuna.create_study(study_name=args.study, storage=args.storage,
                                    direction="maximize", sampler=sampler, pruner=pruner)
        return study, True
    except optuna.exceptions.DuplicatedStudyError:
        return optuna.load_study(study_name=args.study, storage=args.storage,
                                 sampler=sampler, pruner=pruner), False


def wait_for_parent(study: optuna.Study, seconds: int = 60) -> str:
    """The parent run id that the study's creator stores in the study."""
    for _ in range(seconds):
        if PARENT in study.user_attrs:
            return study.user_attrs[PARENT]
        time.sleep(1)
    raise BadInput(f"study {study.study_name} has no parent run: start it anew with another --study")


def run_trials(study: optuna.Study, args: argparse.Namespace, parent_run_id: str) -> None:
    # Stop when the study (all workers) has n_trials trials.
    enough = optuna.study.MaxTrialsCallback(args.n_trials, states=None)
    study.optimize(lambda trial: objective(trial, args, parent_run_id),
                   n_trials=args.n_trials, callbacks=[enough])


def summarize(study: optuna.Study, parent_run_id: str) -> None:
    pruned = study.get_trials(deepcopy=False, states=[TrialState.PRUNED])
    complete = study.get_trials(deepcopy=False, states=[TrialState.COMPLETE])
    print(f"{len(complete)} trials complete, {len(pruned)} pruned; parent run_id={parent_run_id}")
    if complete:
        best = study.best_trial
        print(f"best trial {best.number}: run_id={best.user_attrs['mlflow_run_id']} "
              f"val_accuracy={best.value:.4f} params={best.params}")
        client = mlflow.MlflowClient()
        client.log_metric(parent_run_id, "best_val_accuracy", best.value)
        client.set_tag(parent_run_id, "best_run_id", best.user_attrs["mlflow_run_id"])
        client.set_tag(parent_run_id, "pruned_trials", str(len(pruned)))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    args.study = args.study or f"search-{time.strftime('%Y%m%d-%H%M%S')}"
    args.storage = args.storage or f"sqlite:///{HERE / 'optuna.db'}"
    try:
        if args.n_trials < 1:
            raise BadInput(f"--n-trials is {args.n_trials}: give a positive whole number")
        check_config({**vars(args), "learning_rate": 1e-3, "unfreeze_layers": 0})
        use_tracking(args.experiment)
        study, created = open_study(args)
        if created:
            # Under `mlflow run`, this is the run it made (MLFLOW_RUN_ID).
            with mlflow.start_run(run_name=f"search {args.study}",
                                  tags={"optuna_study": args.study}) as parent:
                study.set_user_attr(PARENT, parent.info.run_id)
                run_trials(study, args, parent.info.run_id)
            parent_run_id = parent.info.run_id
        else:
            parent_run_id = wait_for_parent(study)
            run_trials(study, args, parent_run_id)
    except BadInput as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    summarize(study, parent_run_id)
    return 0


if __name__ == "__main__":
    sys.exit(main())
