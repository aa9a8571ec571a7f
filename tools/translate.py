"""The course in Simplified Chinese from one source: ``python -m tools.translate update|build|check``.

The English notebooks are the source. The Chinese text of each markdown cell lives in a
gettext catalog per notebook, ``locales/zh_CN/<notebook>.po``, keyed by the cell's id
(``msgctxt``) with the English text as ``msgid``; the course's own messages (``_()`` in
``utils``) live in ``utils/locale/zh_CN/LC_MESSAGES/course.po``; a Markdown document of
:data:`DOCUMENTS` has a catalog of its paragraphs.

- ``update`` brings the catalogs up to date with the English: a changed text becomes
  *fuzzy* and keeps its previous English (``#| msgid``), a new one is untranslated, a
  removed one goes obsolete.
- ``build`` writes ``notebooks/zh/`` (code cells, tags, metadata and ids copied from the
  English; only the parameters cell's ``language`` differs), the documents' twins, and the
  compiled ``course.mo``.
- ``check`` exits 1 when an entry is untranslated or fuzzy, when a translation loses a
  link, a number, a code span, a ``{placeholder}`` or a heading of its English, or when a
  built file differs from a fresh build; it names the file, the cell or message, and what
  changed in the English.
"""

from __future__ import annotations

import argparse
import ast
import difflib
import re
import sys
from pathlib import Path

import nbformat
import polib

from utils.workspace import repo_root

ROOT = repo_root()
LANGUAGE = "zh_CN"
NOTEBOOKS = ROOT / "notebooks"
TWINS = NOTEBOOKS / "zh"
CATALOGS = ROOT / "locales" / LANGUAGE
PACKAGE = ROOT / "utils"
PACKAGE_CATALOG = PACKAGE / "locale" / LANGUAGE / "LC_MESSAGES" / "course.po"
#: Markdown documents translated paragraph by paragraph: source -> its Chinese twin.
DOCUMENTS = {"project/README.md": "project/README.zh-CN.md"}
#: The one line of code a Chinese notebook changes: its parameters cell's language.
LANGUAGE_LINE = re.compile(r'^language = "en"', re.MULTILINE)
LINK = re.compile(r"(!?\[[^\]]*\]\()([^)\s]+)(\))")
CODE_SPAN = re.compile(r"`[^`]+`")  # a span may wrap across lines
FENCED = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
NUMBER = re.compile(r"(?<![A-Za-z0-9_.])\d+(?:[.,]\d+)*")
PLACEHOLDER = re.compile(r"\{[a-z_][a-z0-9_]*(?:![rsa])?(?::[^{}]*)?\}")
HEADING = re.compile(r"^(#{1,6})\s+(.*)$", re.MULTILINE)
HEADER = {"Project-Id-Version": "mlflow-dl-course", "Language": LANGUAGE,
          "MIME-Version": "1.0", "Content-Type": "text/plain; charset=UTF-8",
          "Content-Transfer-Encoding": "8bit"}


# -- the texts to translate -------------------------------------------------------------
def course_notebooks() -> list[Path]:
    return sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def catalog_path(notebook: Path) -> Path:
    return CATALOGS / f"{notebook.stem}.po"


def markdown_cells(notebook: Path) -> list[tuple[str, str]]:
    """``(cell id, source)`` of each markdown cell, in order."""
    return [(cell.id, cell.source) for cell in nbformat.read(notebook, as_version=4).cells
            if cell.cell_type == "markdown"]


def document_blocks(text: str) -> list[tuple[str, bool]]:
    """A Markdown document as ``(block, translatable)``: paragraphs, lists and headings are
    translated; fenced code blocks and blank lines are kept as they are."""
    blocks, current, fenced = [], [], False
    for line in text.splitlines():
        if line.startswith("```"):
            if not fenced and current:
                blocks.append(("\n".join(current), True))
                current = []
            current.append(line)
            fenced = not fenced
            if not fenced:
                blocks.append(("\n".join(current), False))
                current = []
        elif fenced or line.strip():
            current.append(line)
        elif current:
            blocks.append(("\n".join(current), True))
            current = []
    if current:
        blocks.append(("\n".join(current), not fenced))
    return blocks


def _marked(tree: ast.AST, names: tuple[str, ...]):
    """``(text, line)`` of each call of one of ``names`` whose first argument is a string."""
    for node in ast.walk(tree):
        function = getattr(node, "func", None)
        name = getattr(function, "id", None) or getattr(function, "attr", None)
        if (isinstance(node, ast.Call) and name in names and node.args
                and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
            yield node.args[0].value, node.lineno


def package_messages() -> dict[str, list[str]]:
    """Every message marked ``_("...")`` or ``N_("...")`` in ``utils``, and the message of
    each ``CourseError("...")`` a notebook raises itself: ``{msgid: [file:line]}``."""
    from IPython.core.inputtransformer2 import TransformerManager

    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for text, line in _marked(ast.parse(path.read_text(encoding="utf-8")), ("_", "N_")):
            found.setdefault(text, []).append(f"{path.relative_to(ROOT)}:{line}")
    magics = TransformerManager()  # `!` and `%` lines to Python, as IPython runs them
    for notebook in course_notebooks():
        cells = nbformat.read(notebook, as_version=4).cells
        for cell in (cell for cell in cells if cell.cell_type == "code"):
            for text, _line in _marked(ast.parse(magics.transform_cell(cell.source)), ("CourseError",)):
                found.setdefault(text, []).append(f"{notebook.relative_to(ROOT)}#{cell.id}")
    return found


# -- update ---------------------------------------------------------------------------------
def load(path: Path) -> polib.POFile:
    catalog = polib.pofile(str(path), wrapwidth=0) if path.exists() else polib.POFile(wrapwidth=0)
    catalog.metadata = {**HEADER, **{k: v for k, v in catalog.metadata.items() if k not in HEADER}}
    return catalog


def merge(catalog: polib.POFile, texts: list[tuple[str | None, str, list[str]]]) -> polib.POFile:
    """``catalog`` brought up to ``texts`` (``(msgctxt or None, msgid, occurrences)``, in
    order). Keyed by context when there is one, else by the English itself: a changed text
    keeps its translation as fuzzy, with the English it translated as ``previous_msgid``."""
    updated = polib.POFile(wrapwidth=0)
    updated.metadata = catalog.metadata
    by_key = {(entry.msgctxt or entry.msgid): entry for entry in catalog}
    unused = {key: entry for key, entry in by_key.items()}
    for context, text, occurrences in texts:
        entry = unused.pop(context or text, None)
        if entry is None and context is None:  # a changed message: its closest old one
            near = difflib.get_close_matches(text, [k for k, e in unused.items() if not e.msgctxt and e.msgstr],
                                             n=1, cutoff=0.8)
            entry = unused.pop(near[0]) if near else None
        if entry is None:
            entry = polib.POEntry(msgctxt=context, msgid=text, msgstr="")
        elif entry.msgid != text:
            if entry.msgstr and "fuzzy" not in entry.flags:
                entry.previous_msgid = entry.msgid
                entry.flags.append("fuzzy")
            entry.msgid = text
        entry.obsolete = False
        entry.occurrences = [(place, "") for place in occurrences]
        updated.append(entry)
    for entry in unused.values():
        if entry.msgstr:  # kept for a text that comes back; an empty one is dropped
            entry.obsolete = True
            updated.append(entry)
    return updated


def sources() -> list[tuple[Path, str, str, list[tuple[str | None, str, list[str]]]]]:
    """Every catalog with what it translates: ``(catalog, name, kind, texts)``, the texts as
    :func:`merge` takes them."""
    found = [(catalog_path(notebook), str(notebook.relative_to(ROOT)), "cell",
              [(cell_id, text, []) for cell_id, text in markdown_cells(notebook)])
             for notebook in course_notebooks()]
    for source in DOCUMENTS:
        if (ROOT / source).exists():
            blocks = document_blocks((ROOT / source).read_text(encoding="utf-8"))
            found.append((document_catalog(source), source, "paragraph",
                          [(None, block, []) for block, translatable in blocks if translatable]))
    found.append((PACKAGE_CATALOG, str(PACKAGE_CATALOG.relative_to(ROOT)), "message",
                  [(None, text, places) for text, places in package_messages().items()]))
    return found


def update() -> list[Path]:
    """Bring every catalog up to date with the English; return the catalogs written."""
    return [save(merge(load(path), texts), path) for path, _, _, texts in sources()]


def document_catalog(source: str) -> Path:
    return CATALOGS / (source.replace("/", "-").removesuffix(".md") + ".po")


def save(catalog: polib.POFile, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    catalog.save(str(path))
    return path


# -- build ----------------------------------------------------------------------------------
def plain(heading: str) -> str:
    """A heading's text as rendered: no code marks, emphasis or link syntax."""
    parts = heading.split("`")
    outside = [re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", part).replace("**", "").replace("*", "")
               for part in parts[::2]]
    parts[::2] = outside
    return "".join(parts).strip()


def anchor(heading: str) -> str:
    """The id JupyterLab gives a Markdown heading: its text, spaces made dashes."""
    return plain(heading).replace(" ", "-")


def headings(cells: list[tuple[str, str]]) -> list[tuple[str, int, str]]:
    """``(cell id, position in the cell, anchor)`` of every heading of a notebook."""
    return [(cell_id, position, anchor(match.group(2)))
            for cell_id, source in cells
            for position, match in enumerate(HEADING.finditer(source))]


class Twins:
    """The English notebooks with their translations, and how their links map."""

    def __init__(self) -> None:
        self.english = {path.name: markdown_cells(path) for path in course_notebooks()}
        self.catalogs = {path.name: load(catalog_path(path)) for path in course_notebooks()}

    def translated(self, name: str, cell_id: str, english: str) -> str:
        entry = next((e for e in self.catalogs[name] if e.msgctxt == cell_id and not e.obsolete), None)
        return entry.msgstr if entry is not None and entry.msgstr else english

    def chinese_anchor(self, name: str, english_anchor: str) -> str | None:
        for cell_id, position, found in headings(self.english[name]):
            if found == english_anchor:
                english = dict(self.english[name])[cell_id]
                matches = list(HEADING.finditer(self.translated(name, cell_id, english)))
                return anchor(matches[position].group(2)) if position < len(matches) else None
        return None

    def link(self, name: str, target: str) -> str:
        """A link of notebook ``name``, as seen from ``notebooks/zh/``."""
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            return target  # https:, mailto: ...
        path, _, fragment = target.partition("#")
        notebook = path or name
        if path and not (notebook in self.english):
            return f"../{target}"  # a figure or a file beside the notebooks
        if not fragment:
            return target
        mapped = self.chinese_anchor(notebook, fragment)
        return f"{path}#{mapped or fragment}"

    def build(self, notebook: Path) -> nbformat.NotebookNode:
        twin = nbformat.read(notebook, as_version=4)
        for cell in twin.cells:
            if cell.cell_type == "markdown":
                text = self.translated(notebook.name, cell.id, cell.source)
                cell.source = LINK.sub(lambda m: m.group(1) + self.link(notebook.name, m.group(2)) + m.group(3), text)
            elif "parameters" in cell.metadata.get("tags", []):
                cell.source = LANGUAGE_LINE.sub(f'language = "{LANGUAGE}"', cell.source)
        return twin


def built_files() -> dict[Path, bytes]:
    """Every file ``build`` writes, with its content."""
    twins = Twins()
    files = {TWINS / path.name: nbformat.writes(twins.build(path)).encode() + b"\n" for path in course_notebooks()}
    for source, target in DOCUMENTS.items():
        if (ROOT / source).exists():
            catalog = {e.msgid: e.msgstr for e in load(document_catalog(source)) if not e.obsolete}
            blocks = document_blocks((ROOT / source).read_text(encoding="utf-8"))
            text = "\n\n".join(catalog.get(block) or block if translatable else block for block, translatable in blocks)
            files[ROOT / target] = (text + "\n").encode()
    files[PACKAGE_CATALOG.with_suffix(".mo")] = load(PACKAGE_CATALOG).to_binary()
    return files


def build() -> list[Path]:
    written = []
    for path, content in built_files().items():
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)
        written.append(path)
    return written


# -- check ----------------------------------------------------------------------------------
def lost(english: str, chinese: str) -> list[str]:
    """What a translation lost of its English: links, numbers, code spans, placeholders, headings."""
    problems = []
    for what, pattern in (("link", LINK), ("code span", CODE_SPAN), ("number", NUMBER),
                          ("placeholder", PLACEHOLDER)):
        def found(text):
            if pattern is CODE_SPAN:  # outside code blocks, whatever the line breaks
                return {" ".join(m.group(0).split()) for m in pattern.finditer(FENCED.sub("", text))}
            return {m.group(2) if pattern is LINK else m.group(0) for m in pattern.finditer(text)}
        missing = sorted(found(english) - found(chinese))
        if missing:
            problems.append(f"{what}(s) {', '.join(missing)} missing from the translation")
    if len(HEADING.findall(english)) != len(HEADING.findall(chinese)):
        problems.append("its headings differ in number from the English (links to them break)")
    return problems


def describe(entry: polib.POEntry) -> str:
    if not entry.msgstr:
        return "not translated yet"
    changed = "\n".join(line for line in difflib.unified_diff(
        (entry.previous_msgid or "").splitlines(), entry.msgid.splitlines(), "translated English",
        "English now", lineterm="", n=0) if not line.startswith(("---", "+++", "@@")))
    return f"the English changed since it was translated:\n{changed}"


def problems() -> list[str]:
    """Everything ``check`` reports, one item each."""
    found = []
    for path, name, kind, texts in sources():
        if not path.exists():
            found.append(f"{name}: no catalog {path.relative_to(ROOT)}: run `python -m tools.translate update`")
            continue
        catalog = load(path)
        for entry in merge(load(path), texts):  # the catalog as `update` would leave it
            if entry.obsolete:
                continue
            where = (f"{name}, {kind} {entry.msgctxt}" if entry.msgctxt else
                     f"{name}, {kind} {entry.msgid.splitlines()[0][:60]!r}"
                     + (f" ({entry.occurrences[0][0]})" if entry.occurrences else ""))
            if not entry.msgstr or "fuzzy" in entry.flags:
                found.append(f"{where}: {describe(entry)}")
            else:
                found += [f"{where}: {problem}" for problem in lost(entry.msgid, entry.msgstr)]
        if str(catalog) != str(merge(load(path), texts)):
            found.append(f"{path.relative_to(ROOT)} is behind the English: run `python -m tools.translate update`")
    fresh = built_files()
    for path, content in fresh.items():
        if not path.exists() or path.read_bytes() != content:
            found.append(f"{path.relative_to(ROOT)} is not what the catalogs build: run `python -m tools.translate build`")
    stale = sorted(set(TWINS.glob("*.ipynb")) - set(fresh))
    found += [f"{path.relative_to(ROOT)} has no English source any more: delete it" for path in stale]
    found += [f"{notebook.relative_to(ROOT)}: its link {target} leads nowhere"
              for notebook, target in broken_links()]
    return found


def broken_links() -> list[tuple[Path, str]]:
    """Links of the Chinese notebooks to files or headings that do not exist."""
    broken = []
    for twin in sorted(TWINS.glob("*.ipynb")):
        cells = markdown_cells(twin)
        for _, source in cells:
            for match in LINK.finditer(source):
                target = match.group(2)
                if re.match(r"^[a-z][a-z0-9+.-]*:", target):
                    continue
                path, _, fragment = target.partition("#")
                file = (twin.parent / path).resolve() if path else twin
                if not file.exists():
                    broken.append((twin, target))
                elif fragment and file.suffix == ".ipynb" and fragment not in {
                        a for _, _, a in headings(markdown_cells(file))}:
                    broken.append((twin, target))
    return broken


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.translate", description=__doc__.splitlines()[0])
    parser.add_argument("verb", choices=("update", "build", "check"))
    verb = parser.parse_args(argv).verb
    if verb == "update":
        for path in update():
            print(f"updated {path.relative_to(ROOT)}")
        return 0
    if verb == "build":
        written = build()
        print(f"built {len(written)} files (notebooks/zh/, the documents' twins, course.mo)")
        return 0
    found = problems()
    for problem in found:
        print(problem, file=sys.stderr)
    if found:
        print(f"\n{len(found)} problem(s). Translate in locales/{LANGUAGE}/ or {PACKAGE_CATALOG.relative_to(ROOT)} "
              "(remove the `#, fuzzy` line once a changed text is translated again), then run "
              "`python -m tools.translate build`.", file=sys.stderr)
        return 1
    print("every translation is up to date, and notebooks/zh/ is what the catalogs build")
    return 0


if __name__ == "__main__":
    sys.exit(main())
