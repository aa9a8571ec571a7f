"""Record the exact code of a run, uncommitted edits included.

MLflow tags a run with the commit of the code (``mlflow.source.git.commit``) but not with
the edits made since that commit, so two runs of different code can carry the same hash.
:func:`log_code_state` closes that gap: it tags the run with whether the git working tree
was dirty, and logs the uncommitted changes as a patch that ``git apply`` replays on a
checkout of the commit.

>>> from utils.code_tracking import log_code_state
>>> with mlflow.start_run():
...     state = log_code_state()          # the git repository of the current folder
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from utils.errors import CourseError

# Tags this module writes on a run.
TAG_DIRTY = "course.git.dirty"
TAG_COMMIT = "course.git.commit"
TAG_UNTRACKED = "course.git.untracked_files"
TAG_NOTE = "course.git.note"
TAG_NOTEBOOK = "course.source.notebook"

# Artifact names, under ``artifact_dir``.
DIFF_NAME = "uncommitted.diff"
UNTRACKED_NAME = "untracked.txt"

# git's well-known id of the empty tree: the base to diff against before the first commit.
_EMPTY_TREE = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
# Untracked files larger than this are listed, but their content is left out of the patch.
DEFAULT_MAX_UNTRACKED_BYTES = 256 * 1024


@dataclass(frozen=True)
class GitState:
    """What git says about the code in one folder.

    ``available`` is False when git is not installed or the folder is not in a git work
    tree; ``reason`` then says which, and the other fields are empty.
    """

    available: bool
    reason: str = ""
    root: Path | None = None
    commit: str | None = None
    branch: str | None = None
    dirty: bool | None = None
    diff: str = ""
    untracked: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    @property
    def dirty_tag(self) -> str:
        """``"true"``, ``"false"``, or ``"unknown"`` when git could not tell."""
        if self.dirty is None:
            return "unknown"
        return "true" if self.dirty else "false"


def _git(args: list[str], cwd: Path, ok_codes=(0,)) -> subprocess.CompletedProcess:
    result = subprocess.run(
        ["git", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        # Keeps bytes that are not UTF-8 intact, so the patch still applies.
        encoding="utf-8",
        errors="surrogateescape",
        # A pager or a credential prompt must never block a notebook cell.
        env={**os.environ, "GIT_PAGER": "cat", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"},
        check=False,
    )
    if result.returncode not in ok_codes:
        raise _GitFailed(result.stderr.strip() or f"git {' '.join(args)} failed")
    return result


class _GitFailed(Exception):
    pass


def git_state(path: str | os.PathLike | None = None,
              max_untracked_bytes: int = DEFAULT_MAX_UNTRACKED_BYTES) -> GitState:
    """Inspect the git work tree that holds ``path`` (the current folder by default).

    Never raises for a missing git or a folder outside a repository: it returns a
    :class:`GitState` with ``available=False`` and the reason. The patch in ``diff``
    holds ``git diff HEAD`` (staged and unstaged edits of tracked files) followed by
    the content of each untracked, not ignored file up to ``max_untracked_bytes``;
    bigger untracked files are named in ``skipped``.
    """
    folder = Path(path if path is not None else os.getcwd()).expanduser().resolve()
    if not folder.exists():
        raise CourseError(f"{folder} does not exist; pass the folder of the code you run.")
    if folder.is_file():
        folder = folder.parent
    if shutil.which("git") is None:
        return GitState(False, "git is not installed, so the code version cannot be recorded "
                               "(install git, e.g. `apt-get install git`)")
    try:
        inside = _git(["rev-parse", "--is-inside-work-tree"], folder, ok_codes=(0, 128))
        if inside.returncode != 0 and "not a git repository" not in inside.stderr:
            raise _GitFailed(inside.stderr.strip())
        if inside.stdout.strip() != "true":
            return GitState(False, f"{folder} is not inside a git repository")
        root = Path(_git(["rev-parse", "--show-toplevel"], folder).stdout.strip())
        head = _git(["rev-parse", "--verify", "--quiet", "HEAD"], root, ok_codes=(0, 1))
        commit = head.stdout.strip() or None
        branch = _git(["branch", "--show-current"], root).stdout.strip() or None
        base = commit or _EMPTY_TREE
        tracked = _git(["diff", "--binary", base], root).stdout
        untracked = _git(["ls-files", "--others", "--exclude-standard", "-z"], root).stdout
        untracked_files = sorted(name for name in untracked.split("\0") if name)
        patches, skipped = [tracked], []
        for name in untracked_files:
            file_path = root / name
            if file_path.is_file() and file_path.stat().st_size > max_untracked_bytes:
                skipped.append(name)
                continue
            # --no-index exits 1 when the files differ, which they always do here.
            patches.append(_git(["diff", "--binary", "--no-index", "--", "/dev/null", name],
                                root, ok_codes=(0, 1)).stdout)
    except _GitFailed as error:
        return GitState(False, f"git could not read {folder}: {error}")
    return GitState(
        available=True,
        root=root,
        commit=commit,
        branch=branch,
        dirty=bool(tracked) or bool(untracked_files),
        diff="".join(patches),
        untracked=untracked_files,
        skipped=skipped,
    )


def log_code_state(path: str | os.PathLike | None = None, run_id: str | None = None,
                   artifact_dir: str = "code", notebook: str | None = None,
                   max_untracked_bytes: int = DEFAULT_MAX_UNTRACKED_BYTES) -> GitState:
    """Tag a run with the state of the code's git work tree and log uncommitted edits.

    Works on the active run, or on ``run_id``. Sets the tags

    - ``course.git.dirty``: ``"true"``, ``"false"``, or ``"unknown"`` without git;
    - ``course.git.commit``: the commit checked out (absent before the first commit);
    - ``course.git.untracked_files``: how many untracked files there were;
    - ``course.git.note``: why the state is unknown, or which untracked files were too
      big to include;
    - ``course.source.notebook``: ``notebook``, when given (a kernel cannot know which
      notebook runs it, so the notebook names itself).

    When the tree is dirty it logs ``<artifact_dir>/uncommitted.diff``, a patch that
    ``git apply`` replays on a checkout of the commit, and
    ``<artifact_dir>/untracked.txt``, the untracked files. Returns the :class:`GitState`.
    """
    import mlflow

    if run_id is None:
        active = mlflow.active_run()
        if active is None:
            raise CourseError(
                "log_code_state() needs a run: call it inside `with mlflow.start_run():` "
                "or pass run_id=..."
            )
        run_id = active.info.run_id
    state = git_state(path, max_untracked_bytes=max_untracked_bytes)
    client = mlflow.MlflowClient()
    tags = {TAG_DIRTY: state.dirty_tag}
    if notebook:
        tags[TAG_NOTEBOOK] = notebook
    if not state.available:
        tags[TAG_NOTE] = state.reason
    else:
        tags[TAG_UNTRACKED] = str(len(state.untracked))
        if state.commit:
            tags[TAG_COMMIT] = state.commit
        if state.skipped:
            tags[TAG_NOTE] = ("untracked files too big for the patch: "
                              + ", ".join(state.skipped))[:5000]
    for key, value in tags.items():
        client.set_tag(run_id, key, value)
    if state.dirty:
        with tempfile.TemporaryDirectory() as tmp:
            (Path(tmp) / DIFF_NAME).write_text(state.diff, encoding="utf-8",
                                               errors="surrogateescape")
            (Path(tmp) / UNTRACKED_NAME).write_text(
                "".join(f"{name}\n" for name in state.untracked), encoding="utf-8"
            )
            client.log_artifact(run_id, str(Path(tmp) / DIFF_NAME), artifact_dir)
            client.log_artifact(run_id, str(Path(tmp) / UNTRACKED_NAME), artifact_dir)
    return state
