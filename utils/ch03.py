"""Notebook 03's run: the functions of its ``#@save`` cells, as they are there.

Written by ``python -m tools.export_cells`` from notebooks/03_first_autologged_run.ipynb;
edit the notebook, not this file (tests/test_export_cells.py checks that they agree).
"""

import flash
import mlflow
import pandas as pd
import pytorch_lightning as pl
import torch
from flash.text import TextClassificationData, TextClassifier
from utils import pooling, sentiment_model, training


def review_datasets(data_dir):
    """The subset's three files as MLflow datasets, by the context each is logged under."""
    contexts = {"train": "training", "valid": "validation", "test": "testing"}
    return {context: mlflow.data.from_pandas(
                pd.read_csv(data_dir / f"{split}.csv"), source=str(data_dir / f"{split}.csv"),
                name=f"{data_dir.name}-{split}", targets="sentiment")
            for split, context in contexts.items()}


def review_data_module(data_dir, params):
    """flash's data module over the subset in `data_dir`, in batches of `params.batch_size`."""
    return TextClassificationData.from_csv(
        "review", "sentiment",
        train_file=str(data_dir / "train.csv"),
        val_file=str(data_dir / "valid.csv"),
        test_file=str(data_dir / "test.csv"),
        batch_size=params.batch_size,
        pin_memory=torch.cuda.is_available(),  # pinned memory only speeds up copies to a GPU
    )


def sentiment_classifier(params, labels):
    """The backbone with a new classification layer, seeded; `params.pooling` picks its input."""
    pl.seed_everything(params.seed, workers=True)
    settings = dict(labels=labels, max_length=params.max_length, learning_rate=params.learning_rate)
    if params.pooling == "mean":
        return TextClassifier(backbone=pooling.MEAN_POOLING, pretrained=params.backbone, **settings)
    with pooling.flash_loading():  # flash would switch off every warning of the process
        return TextClassifier(backbone=params.backbone, **settings)


def sentiment_trainer(params):
    """A flash trainer that leaves the recording to MLflow."""
    return flash.Trainer(
        max_epochs=params.max_epochs, accelerator=params.accelerator, deterministic=True,
        logger=False, enable_checkpointing=False, enable_model_summary=False,
        num_sanity_val_steps=0,  # no trial validation batches before training
        default_root_dir=str(training.scratch_folder()),  # not the notebooks' folder
        callbacks=training.course_callbacks(),
    )


def autolog_lightning(checkpoint=True):
    """Record every fit and test of a Lightning trainer into the active run."""
    mlflow.pytorch.autolog(log_every_n_step=4, checkpoint=checkpoint,
                           checkpoint_monitor="val_cross_entropy", log_models=False)


def record_run(params, data_dir, datamodule, model, trainer, **start_run_options):
    """Start a run, log what autologging cannot see, train, test, and log the model.
    `start_run_options` go to mlflow.start_run; returns the run and the model's info."""
    mlflow.set_system_metrics_sampling_interval(2)  # seconds between samples of the machine
    options = {"run_name": params.run_name, "log_system_metrics": True, **start_run_options}
    with mlflow.start_run(**options) as run:
        mlflow.log_params(training.loggable_params(params))
        mlflow.set_tags(training.provenance_tags(params))
        for context, dataset in review_datasets(data_dir).items():
            mlflow.log_input(dataset, context=context)
        trainer.finetune(model, datamodule=datamodule, strategy=params.strategy)
        trainer.test(model, datamodule=datamodule, verbose=False)
        model_info = sentiment_model.log_model(
            model, name="model", signature=sentiment_model.SIGNATURE,
            input_example=sentiment_model.EXAMPLE_REVIEWS,
            pip_requirements=training.pinned_requirements())
    return run, model_info
