"""The language of the course's own messages: exercise checks, ``CourseError`` messages and
the environment check. English is written in the code; Simplified Chinese comes from the
gettext catalog ``utils/locale/zh_CN/LC_MESSAGES/course.po`` (compiled to ``course.mo`` by
``python -m tools.translate build``). MLflow's own messages stay as MLflow prints them.

A module marks a message with ``_("... {name} ...").format(name=...)``, having imported
``from utils.i18n import gettext as _``; a text defined once and translated where it is shown
(an exercise's title or hint) is marked ``N_("...")`` and shown as ``_(text)``.
``tools.translate`` extracts both.
"""

from __future__ import annotations

import functools
import gettext as stdlib_gettext
import os
from pathlib import Path

#: Set by :func:`use_language`; the processes a notebook starts (workers, servers) inherit it.
LANGUAGE_ENV = "COURSE_LANGUAGE"
LANGUAGES = ("en", "zh_CN")
DOMAIN = "course"
LOCALE_DIR = Path(__file__).resolve().parent / "locale"


def language() -> str:
    """The language the course speaks in this process: ``$COURSE_LANGUAGE``, else English."""
    chosen = os.environ.get(LANGUAGE_ENV, "").strip()
    return chosen if chosen in LANGUAGES else "en"


def use_language(chosen: str) -> str:
    """Make the course's messages speak ``chosen`` ("en" or "zh_CN") in this process and in
    the processes it starts; return it."""
    if chosen not in LANGUAGES:
        raise ValueError(f"language={chosen!r} is not one of the course's languages: use \"en\" "
                          f"(English) or \"zh_CN\" (简体中文).")
    os.environ[LANGUAGE_ENV] = chosen
    return chosen


@functools.cache
def catalog(chosen: str) -> stdlib_gettext.NullTranslations:
    """The compiled catalog of ``chosen``; English needs none."""
    return stdlib_gettext.translation(DOMAIN, LOCALE_DIR, languages=[chosen], fallback=True)


def gettext(message: str) -> str:
    """``message`` in the course's language (itself when there is no translation)."""
    return catalog(language()).gettext(message)


def N_(message: str) -> str:  # noqa: N802 (gettext's name for it)
    """Mark ``message`` for translation where it is shown, not here; return it unchanged."""
    return message
