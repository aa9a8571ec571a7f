"""Shared helpers of the MLflow deep-learning course.

Importing ``utils`` is cheap: the heavy parts (torch, lightning-flash) load only when a
helper that needs them is first used.
"""

from utils.env import check_environment, print_environment
from utils.errors import CourseError
from utils.tracking import TrackingServer, start_server, stop_all_servers
from utils.workspace import Workspace, get_workspace, use_workspace

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
]
