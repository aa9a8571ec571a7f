"""The secret scanner: `scan_secrets.find_secrets` looks for Databricks-token-shaped strings,
passwords inside URIs, HTTP basic-auth headers and known secrets. Notebook 02's test runs it on
notebook 02's output, tests/notebook_runner.py's `reading_problems` on the notebooks the full tier
runs at their defaults and filled in."""

import json
import sqlite3
from pathlib import Path

import pytest

from tools import scan_secrets
from utils import remote

TOKEN = "dapi" + "0123456789abcdef" * 2  # built from parts: no file of the course holds one


@pytest.mark.parametrize(
    "text, kind, secret",
    [
        (f"DATABRICKS_TOKEN={TOKEN}", "Databricks token", TOKEN[4:-4]),
        (f"token = {TOKEN}-2", "Databricks token", TOKEN[4:-4]),
        (f"export T='{TOKEN.upper().replace('DAPI', 'dapi')}'", "Databricks token", TOKEN[4:-4].upper()),
        ("postgresql://mlflow:Zq8xK2pLm4@db:5432/mlflow", "password in a URI", "Zq8xK2pLm4"),
        ("see http://admin:password1234@127.0.0.1:5000/", "password in a URI", "password1234"),
        ("Authorization: Basic c3R1ZGVudDpzZWNyZXQ=", "HTTP basic-auth header", "c3R1ZGVudDpzZWNyZXQ"),
        ("'authorization': 'Basic c3R1ZGVudDpzZWNyZXQ='", "HTTP basic-auth header", "c3R1ZGVudDpzZWNyZXQ"),
    ],
)
def test_secret_shapes_are_found_and_never_repeated(text, kind, secret):
    findings = scan_secrets.find_secrets("first line\n" + text, where="cell")
    assert [(f.kind, f.line, f.where) for f in findings] == [(kind, 2, "cell")]
    assert secret in text and secret not in str(findings[0]) and secret not in repr(findings[0])


def test_known_secrets_are_found_wherever_they_are():
    password = "kT4-x9_QmZ"
    findings = scan_secrets.find_secrets(f"a\nb {password}\nc\n\"{password}\"", known=[password, ""])
    assert [(f.kind, f.line) for f in findings] == [("known secret", 2), ("known secret", 4)]
    assert all(password not in str(f) for f in findings)
    with pytest.raises(ValueError):
        scan_secrets.find_secrets("x", known=["abc"])  # too short to search for meaningfully


@pytest.mark.parametrize(
    "text",
    [
        "token: dapi…cdef",  # the masked form the course prints
        "DATABRICKS_TOKEN=dapi...",  # documentation placeholders
        "postgresql://mlflow:<password>@db:5432/mlflow",
        "postgresql://mlflow:****@127.0.0.1:5432/mlflow",
        "postgresql://mlflow:${PGPASSWORD}@db/mlflow",
        "postgresql://mlflow@127.0.0.1:5432/mlflow",
        "http://127.0.0.1:5000/#/experiments/1/runs/0123456789abcdef0123456789abcdef",
        "the dapi prefix marks a token",
    ],
)
def test_placeholders_masked_values_and_ordinary_text_are_not_findings(text):
    assert scan_secrets.find_secrets(text) == []


def test_redact_masks_what_find_secrets_finds():
    text = f"{TOKEN} postgresql://u:Zq8xK2pLm4@db/x and kT4-x9_QmZ"
    redacted = remote.redact(text, known=["kT4-x9_QmZ"])
    assert scan_secrets.find_secrets(redacted, known=["kT4-x9_QmZ"]) == []
    assert "dapi…cdef" in redacted and "postgresql://u:****@db/x" in redacted


def test_scanning_an_executed_notebook_and_a_database_file(tmp_path):
    notebook = {
        "cells": [{"cell_type": "code", "source": ["print(token)"], "outputs": [{"output_type": "stream", "name": "stdout", "text": [TOKEN + "\n"]}]}],
        "metadata": {"papermill": {"parameters": {"db": "postgresql://u:Zq8xK2pLm4@h/d"}}},
    }
    leaky = tmp_path / "executed" / "02.ipynb"
    leaky.parent.mkdir()
    leaky.write_text(json.dumps(notebook, indent=1))
    with sqlite3.connect(tmp_path / "executed" / "mlflow.db") as db:  # a binary file
        db.execute("CREATE TABLE params (key TEXT, value TEXT)")
        db.execute("INSERT INTO params VALUES ('secret', ?)", ("kT4-x9_QmZ",))
    findings = scan_secrets.scan_files([tmp_path / "executed"], known=["kT4-x9_QmZ"])
    kinds = sorted((Path(f.where).name, f.kind) for f in findings)
    assert kinds == [("02.ipynb", "Databricks token"), ("02.ipynb", "password in a URI"), ("mlflow.db", "known secret")]
    # The command-line form fails on the same folder and passes on a clean one.
    assert scan_secrets.main([str(tmp_path / "executed")]) == 1
    (tmp_path / "clean").mkdir()
    (tmp_path / "clean" / "01.ipynb").write_text(json.dumps({"cells": [], "metadata": {}}))
    assert scan_secrets.main([str(tmp_path / "clean")]) == 0
