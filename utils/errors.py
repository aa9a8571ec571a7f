"""The one exception type the course raises for problems a reader can fix."""


class CourseError(RuntimeError):
    """A problem with the reader's set-up or input; its message says what to do."""
