"""The course's checked exercises: the framework (``base``) and one module per notebook.

A notebook imports its module (``from utils.exercises import ex01``) and checks an answer
with ``ex01.q1.check()``; ``ex01.q1.hint()`` and ``ex01.q1.solution()`` help. A content
module builds its exercises from what this package exports::

    from utils.exercises import Exercise, Incorrect
"""

from utils.exercises.base import (
    CORRECT,
    GENERIC_FAILURE,
    INCORRECT,
    NOT_ATTEMPTED,
    STATUSES,
    Exercise,
    Incorrect,
    Verdict,
    find_run,
    tracking_client,
)

__all__ = ["CORRECT", "GENERIC_FAILURE", "INCORRECT", "NOT_ATTEMPTED", "STATUSES",
           "Exercise", "Incorrect", "Verdict", "find_run", "tracking_client"]
