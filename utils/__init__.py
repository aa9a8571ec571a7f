"""Shared helpers of the MLflow deep-learning course: the names notebooks call as ``utils.x``.

Importing ``utils`` is cheap: torch and the rest load when a lazy name is first used.
"""

from importlib import import_module

from utils.env import print_environment
from utils.errors import CourseError
from utils.i18n import use_language
from utils.tracking import start_server, tracking_server
from utils.workspace import use_workspace

# name -> module that defines it; imported on first use.
_LAZY = {"ensure_example_run": "utils.runs", "ensure_run": "utils.runs",
         "release_memory": "utils.training", "serve_model": "utils.serving"}

__all__ = ["CourseError", "print_environment", "start_server", "tracking_server", "use_language",
           "use_workspace",
           *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
