"""Scan text and files (executed notebooks, logs, stores) for things that look like secrets.

``python -m tools.scan_secrets PATH...`` scans files or folders and exits with status 1 when it
finds a Databricks token, a password inside a URI, an HTTP basic-auth header, or a secret
this machine's course runs may have met (see :func:`known_secrets`). CI runs it on the
executed notebooks of ``make course``. Findings never contain the secret itself.
"""

from __future__ import annotations

import configparser
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from utils.remote import BACKEND_STORE_ENV, PASSWORD_ENV, TOKEN_ENV, TOKEN_LIKE
from utils.workspace import URI_PASSWORD, Workspace, get_workspace, mask_uri

BASIC_HEADER = re.compile(r"Authorization\W{1,4}Basic\s+[A-Za-z0-9+/=]{8,}", re.IGNORECASE)
# What a text may show in place of a password: <password>, ${PW}, $PW, ****, ...
PLACEHOLDER = re.compile(r"^(?:<[^>]*>|\$\{?[A-Za-z_][A-Za-z0-9_]*\}?|\{[^}]*\}|[*x.•…]+)$", re.I)


def uri_password(uri: str) -> str | None:
    """The password inside ``scheme://user:password@host/...``, or None."""
    match = URI_PASSWORD.search(uri)
    return match["pw"] if match and not PLACEHOLDER.match(match["pw"]) else None


@dataclass(frozen=True)
class SecretFinding:
    """One place where something secret-looking was found; ``preview`` is masked."""

    where: str
    line: int
    kind: str
    preview: str

    def __str__(self) -> str:
        return f"{self.where}:{self.line}: {self.kind} ({self.preview})"


def find_secrets(text: str, known: Iterable[str] = (), where: str = "text") -> list[SecretFinding]:
    """Find secrets in ``text``: Databricks-token-shaped strings, passwords inside URIs,
    HTTP basic-auth headers, and any of the ``known`` secrets (passwords, tokens).

    The findings never contain the secret itself. Placeholders such as ``<password>`` or
    ``****`` in a URI are not findings.
    """
    found: list[SecretFinding] = []

    def add(position: int, kind: str, preview: str) -> None:
        found.append(SecretFinding(where, text.count("\n", 0, position) + 1, kind, preview))

    for match in TOKEN_LIKE.finditer(text):
        add(match.start(), "Databricks token", f"{match[0][:4]}…{match[0][-4:]}")
    for match in URI_PASSWORD.finditer(text):
        if not PLACEHOLDER.match(match["pw"]):
            add(match.start(), "password in a URI", mask_uri(match[0]))
    for match in BASIC_HEADER.finditer(text):
        add(match.start(), "HTTP basic-auth header", "Authorization: Basic ****")
    for number, secret in enumerate(s for s in known if s):
        if len(secret) < 6:
            raise ValueError("known secrets must have at least 6 characters to be searched for")
        start = text.find(secret)
        while start != -1:
            add(start, "known secret", f"#{number + 1}, {len(secret)} characters")
            start = text.find(secret, start + 1)
    return sorted(found, key=lambda f: f.line)


def scan_files(paths: Iterable[str | Path], known: Iterable[str] = ()) -> list[SecretFinding]:
    """:func:`find_secrets` over files and (recursively) folders, binary files included
    (a SQLite store keeps text as plain bytes)."""
    known = list(known)
    findings: list[SecretFinding] = []
    for path in paths:
        path = Path(path)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            text = file.read_bytes().decode("latin-1")
            findings += find_secrets(text, known, where=str(file))
    return findings


def known_secrets(environ: Mapping[str, str] | None = None, workspace: Workspace | None = None) -> list[str]:
    """The secrets this machine's course runs may have met, to search executed output for:
    the Databricks token, MLflow and PostgreSQL passwords from the environment, and the
    admin password of the course server's auth config in the workspace."""
    environ = os.environ if environ is None else environ
    found = [environ.get(TOKEN_ENV, ""), environ.get(PASSWORD_ENV, ""), environ.get("PGPASSWORD", "")]
    for name in (BACKEND_STORE_ENV, "COURSE_TEST_POSTGRES_URI"):
        password = uri_password(environ.get(name, ""))
        found += [password or "", unquote(password or "")]
    workspace = workspace or get_workspace(create=False)
    config = workspace.path / "auth" / "basic_auth.ini"
    if config.is_file():
        parser = configparser.ConfigParser(interpolation=None)
        parser.read(config, encoding="utf-8")
        found.append(parser.get("mlflow", "admin_password", fallback=""))
    return sorted({s for s in found if len(s) >= 6})


def main(argv: list[str] | None = None) -> int:
    """``python -m tools.scan_secrets PATH...``: scan files or folders (e.g. executed notebooks)
    for secrets; exit status 1 when something is found."""
    import sys

    paths = (argv if argv is not None else sys.argv[1:]) or ["build/executed"]
    findings = scan_files([p for p in paths if Path(p).exists()], known_secrets())
    for finding in findings:
        print(finding)
    print(f"{len(findings)} possible secret(s) in {', '.join(paths)}")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
