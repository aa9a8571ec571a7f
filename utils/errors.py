"""The one exception type the course raises for problems a reader can fix."""


class CourseError(RuntimeError):
    """A problem with the reader's set-up or input, with a message that says what to do.

    Notebooks let it propagate: the message is written to be read as it is, without
    the stack of library calls below it.
    """
