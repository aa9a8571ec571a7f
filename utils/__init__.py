"""Shared helpers of the MLflow deep-learning course.

Importing ``utils`` is cheap: the heavy parts (torch, lightning-flash) load only when a
helper that needs them is first used, through the lazy names below.
"""

from importlib import import_module

from utils.env import check_environment, print_environment
from utils.errors import CourseError
from utils.tracking import (TrackingServer, start_server, stop_all_servers, tracking_server,
                            workspace_server)
from utils.workspace import Workspace, get_workspace, use_workspace

# name -> module that defines it; imported on first use.
_LAZY = {
    "ensure_example_run": "utils.runs",
    "ensure_run": "utils.runs",
    "release_memory": "utils.training",
    "serve_model": "utils.serving",
}

__all__ = [
    "CourseError",
    "TrackingServer",
    "Workspace",
    "check_environment",
    "get_workspace",
    "print_environment",
    "start_server",
    "stop_all_servers",
    "use_workspace",
    "tracking_server",
    "workspace_server",
    *_LAZY,
]


def __getattr__(name):
    if name in _LAZY:
        return getattr(import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'utils' has no attribute {name!r}")
