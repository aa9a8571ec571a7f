"""Checked exercises: the learner writes an MLflow call, a check reads what it made.

Why a module of our own: we looked at otter-grader 7.0 and nbgrader 0.9.6 (their docs and
their wheels) first. Otter's ``grader.check("q1")`` runs doctest-style test files that
``otter assign`` generates from a master notebook into a separate student copy; a question
passes or fails (points), with no "not attempted" outcome; every check appends a dill
pickle to a ``.OTTER_LOG`` file in the working folder; and it pulls in ipywidgets, ipylab,
jupytext and nbconvert[webpdf]. nbgrader is a course-management system
(a grade database, an exchange folder, JupyterLab extensions; it pins jupyter-client < 9);
its student cells are ``raise NotImplementedError()``, which fails nbval and papermill at
the defaults, and grading is the instructor's ``autograde`` of submitted notebooks, not a
message in the learner's kernel. The course needs less and something else: the notebooks
as committed are the learner's copy, an untouched cell must say ``Not attempted`` and raise
nothing, and a check queries the learner's live MLflow store and names the mistake in plain
words. That is this small module, with IPython (in every kernel) and the standard
library only.

A content module (``utils/exercises/ex01.py`` ...) defines ``q1``, ``q2``, ... as
:class:`Exercise` objects; a notebook's check cell calls ``ex01.q1.check()``. A check
function gets the learner's answers and the notebook's namespace and either returns a short
explanation (``Correct``) or raises :class:`Incorrect` with a message in the learner's
terms. ``python -m tools.exercises solve`` fills the exercise cells in with each
exercise's ``solution`` (or its typical ``mistake``).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from utils.i18n import N_
from utils.i18n import gettext as _

CORRECT, NOT_ATTEMPTED, INCORRECT = N_("Correct"), N_("Not attempted"), N_("Incorrect")
STATUSES = (CORRECT, NOT_ATTEMPTED, INCORRECT)
# The start of the message when a check itself failed (an exception it did not expect).
# A typical mistake must have its own message: the course's tests look for this text.
GENERIC_FAILURE = N_("checking your answer failed")


class Incorrect(Exception):
    """Raised by a check: the answer is wrong. The message says why, in the learner's terms."""


@dataclass(frozen=True)
class Verdict:
    """The outcome of a check: ``status`` (one of :data:`STATUSES`) and a message."""

    status: str
    message: str

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"A verdict's status is one of {STATUSES}, not {self.status!r}.")

    @property
    def line(self) -> str:
        """The verdict as ``check()`` prints it: one line, the status first, in the course's
        language (the message is translated where it is made)."""
        return _("{status}: {message}").format(status=_(self.status), message=" ".join(self.message.split()))

    def __str__(self) -> str:
        return self.line


def _untouched(namespace: Mapping[str, Any], name: str) -> bool:
    return namespace.get(name, ...) is ...


class Exercise:
    """One exercise of a notebook.

    ``key`` is ``"NN.K"`` (notebook, then number: ``"01.1"`` is ``ex01.q1``); ``answers``
    the variables the exercise cell assigns (``...`` until the learner answers);
    ``check(answers, namespace)`` judges them: it returns a short explanation or raises
    :class:`Incorrect`. ``hint`` is Markdown; ``solution`` and ``mistake`` are code that
    replaces the exercise cell, the first making the check say ``Correct``, the second
    ``Incorrect`` with a message of its own.
    """

    def __init__(self, key: str, title: str, answers: tuple[str, ...] | list[str] | str,
                 check: Callable[[dict[str, Any], Mapping[str, Any]], str | None],
                 hint: str, solution: str, mistake: str) -> None:
        answers = (answers,) if isinstance(answers, str) else tuple(answers)
        if not answers or not all(isinstance(a, str) and a.isidentifier() for a in answers):
            raise ValueError(f"Exercise {key}: `answers` must name the variables the exercise "
                             f"cell assigns, like (\"run_id\",); got {answers!r}.")
        if not callable(check):
            raise TypeError(f"Exercise {key}: `check` must be a function(answers, namespace).")
        self.key, self.title, self.answers = key, title, answers
        # `check`, `hint` and `solution` are the methods a notebook calls; the texts behind them:
        self.checker, self.hint_text = check, hint
        self.solution_code, self.mistake = solution.strip("\n"), mistake.strip("\n")

    @property
    def name(self) -> str:
        """How a notebook calls this exercise: ``ex01.q1`` for key ``01.1``."""
        match = re.fullmatch(r"(\d+)\.(\d+)", self.key)
        return f"ex{match[1]}.q{match[2]}" if match else f"exercise {self.key}"

    def __repr__(self) -> str:
        return f"<Exercise {self.key}: {self.title}>"

    # -- judging ------------------------------------------------------------------
    def evaluate(self, namespace: Mapping[str, Any]) -> Verdict:
        """The verdict on the answers in ``namespace`` (a notebook's globals); never raises."""
        untouched = [name for name in self.answers if _untouched(namespace, name)]
        if len(untouched) == len(self.answers):
            return Verdict(NOT_ATTEMPTED, _(
                "exercise {key} ({title}). Replace the `...` in the exercise cell above with your "
                "answer, run that cell, then this one. For a hint, run `{name}.hint()`."
            ).format(key=self.key, title=_(self.title), name=self.name))
        if untouched:
            names = " and ".join(f"`{name}`" for name in untouched)
            one = _("{names} is still `...`: the exercise cell must set it too. Then run that cell "
                    "again, then this one.")
            several = _("{names} are still `...`: the exercise cell must set them too. Then run that "
                        "cell again, then this one.")
            return Verdict(INCORRECT, (one if len(untouched) == 1 else several).format(names=names))
        answers = {name: namespace[name] for name in self.answers}
        try:
            explanation = self.checker(answers, namespace)
        except Incorrect as wrong:
            return Verdict(INCORRECT, str(wrong) or _("that is not the answer."))
        except Exception as error:  # the check did not foresee this answer
            return Verdict(INCORRECT, _failure_message(error, self))
        if explanation is None:
            return Verdict(CORRECT, _("that is right."))
        if not isinstance(explanation, str):
            return Verdict(INCORRECT, _failure_message(TypeError(
                f"the check of exercise {self.key} returned {type(explanation).__name__}, "
                "not its explanation"), self))
        return Verdict(CORRECT, explanation)

    def check(self) -> None:
        """Print the verdict on the learner's answers, in one line. Never raises."""
        try:
            verdict = self.evaluate(_notebook_namespace())
        except Exception as error:  # e.g. no namespace to be found
            verdict = Verdict(INCORRECT, _failure_message(error, self))
        print(verdict.line)

    # -- help ---------------------------------------------------------------------
    def hint(self) -> None:
        """Show the hint (Markdown), in the course's language."""
        _show(_("**Hint for exercise {key}** ({title}): {hint}").format(
            key=self.key, title=_(self.title), hint=_(self.hint_text)))

    def solution(self) -> None:
        """Show one answer: the code that, in place of the exercise cell, makes the check pass."""
        _show(_("**One answer to exercise {key}** ({title}): put this in the exercise cell, run it, "
                "then the check.").format(key=self.key, title=_(self.title))
              + f"\n\n```python\n{self.solution_code}\n```")


# -- what the checks share ------------------------------------------------------------
def tracking_client(tracking_uri: str | None = None):
    """A client of the tracking store in effect (the one the learner's own calls use), or of
    ``tracking_uri``."""
    import mlflow

    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def find_run(run_id: Any, what: str):
    """The run ``run_id`` names in the store in effect, or :class:`Incorrect` saying what the
    answer ``what`` (its name, e.g. ```pooler_run_id```) should be."""
    from mlflow.exceptions import MlflowException

    if not isinstance(run_id, str) or not run_id.strip():
        kind = type(run_id).__name__
        shown = (repr(run_id) if run_id is None or isinstance(run_id, (str, int, float))
                 else _("a {kind}").format(kind=kind))
        extra = _(" Take one id out of it, e.g. `.run_id.iloc[0]`.") if kind in ("DataFrame", "Series") else ""
        raise Incorrect(_("{what} should be a run id, a string of 32 hexadecimal digits such as "
                          "`run.info.run_id`; it is {shown}.").format(what=what, shown=shown) + extra)
    try:
        return tracking_client().get_run(run_id.strip())
    except MlflowException:
        raise Incorrect(_("There is no run {run_id!r} in this tracking store: {what} should be the "
                          "id of a run you made in this notebook.").format(run_id=run_id, what=what)) from None


def _failure_message(error: BaseException, exercise: Exercise) -> str:
    text = error.args[0] if len(error.args) == 1 and isinstance(error.args[0], str) else str(error)
    lines = text.strip().splitlines()  # (str() of a KeyError is its repr)
    detail = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return _("{failure} ({detail}). Look at the exercise cell for a slip, run it again, then this "
             "one; `{name}.hint()` shows a hint.").format(failure=_(GENERIC_FAILURE), detail=detail,
                                                         name=exercise.name)


def _ipython():
    try:
        from IPython import get_ipython
    except ImportError:
        return None
    return get_ipython()


def _notebook_namespace(depth: int = 2) -> Mapping[str, Any]:
    """The notebook's variables: IPython's user namespace, else the globals of the frame
    ``depth`` calls up (``check()``'s caller)."""
    shell = _ipython()
    if shell is not None:
        return shell.user_ns
    return sys._getframe(depth).f_globals


def _show(markdown: str) -> None:
    if _ipython() is None:
        print(markdown)
        return
    from IPython.display import Markdown, display

    display(Markdown(markdown))
