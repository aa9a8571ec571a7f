"""The one exception type the course raises for problems a reader can fix."""

from utils.i18n import gettext


class CourseError(RuntimeError):
    """A problem with the reader's set-up or input; its message says what to do. A notebook's
    own message is shown in the course's language (``tools.translate`` extracts it), and
    ``detail`` (such as a program's output) below it, as it is."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(gettext(message) + (f"\n{detail}" if detail else ""))
