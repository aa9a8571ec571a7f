"""The Chinese edition: one source, code identical by construction, a stale translation caught.

notebooks/zh/ is built from the English notebooks and the catalogs of locales/zh_CN/
(tools/translate.py). Its code cells are the English ones but for the parameters cell's
`language`; its prose is Chinese and uses the terms of TERMINOLOGY.md; the course's own
messages answer in Chinese there. A change to the English that nobody translated fails
`python -m tools.translate check`, which names the notebook and the cell.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys

import nbformat
import pytest

from tools import translate
from utils.workspace import repo_root

ROOT = repo_root()
ENGLISH = translate.course_notebooks()
CJK = re.compile(r"[\u4e00-\u9fff]")


def _twin(path):
    return translate.TWINS / path.name


def test_the_translations_are_complete_and_built():
    assert translate.problems() == []


@pytest.mark.parametrize("path", ENGLISH, ids=lambda p: p.name)
def test_the_twin_speaks_chinese_and_runs_the_same_code(path):
    english, chinese = (nbformat.read(p, as_version=4) for p in (path, _twin(path)))
    assert [(c.id, c.cell_type) for c in chinese.cells] == [(c.id, c.cell_type) for c in english.cells]
    markdown = [c.source for c in chinese.cells if c.cell_type == "markdown"]
    in_chinese = sum(bool(CJK.search(source)) for source in markdown)
    assert in_chinese >= 0.95 * len(markdown), f"{in_chinese} of {len(markdown)} markdown cells in Chinese"
    differences = []
    for en, zh in zip(english.cells, chinese.cells):
        if en.cell_type != "code":
            continue
        assert zh.metadata == en.metadata and zh.get("outputs") == en.get("outputs")
        if zh.source != en.source:
            differences.append((en.source.splitlines(), zh.source.splitlines()))
    (parameters_en, parameters_zh), = differences  # the one declared difference
    changed = [(a, b) for a, b in zip(parameters_en, parameters_zh) if a != b]
    assert len(parameters_en) == len(parameters_zh) and len(changed) == 1, changed
    assert changed[0][0].startswith('language = "en"') and changed[0][1].startswith('language = "zh_CN"')


def _rejected_terms() -> dict[str, str]:
    """``{variant: the term to use}`` from the last column of TERMINOLOGY.md."""
    rejected = {}
    for line in (translate.CATALOGS / "TERMINOLOGY.md").read_text(encoding="utf-8").splitlines():
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if len(cells) == 4 and CJK.search(cells[3]):
            rejected.update({variant.strip(): cells[1] for variant in cells[3].split(",")})
    return rejected


def test_the_chinese_uses_the_terms_of_the_terminology():
    rejected = _rejected_terms()
    assert {"试验", "构件", "制品", "产物"} <= set(rejected)
    texts = {str(path.relative_to(ROOT)): "\n".join(c.source for c in nbformat.read(path, as_version=4).cells
                                                   if c.cell_type == "markdown")
             for path in sorted(translate.TWINS.glob("*.ipynb"))}
    texts["course.po"] = "\n".join(entry.msgstr for entry in translate.load(translate.PACKAGE_CATALOG))
    for name in ("README.zh-CN.md", *translate.DOCUMENTS.values()):
        if (ROOT / name).exists():
            texts[name] = (ROOT / name).read_text(encoding="utf-8")
    found = [f"{name}: {variant!r} (use {rejected[variant]})" for name, text in texts.items()
             for variant in rejected if variant in text]
    assert found == []


def test_a_changed_english_sentence_fails_the_check_and_names_the_cell(tmp_path):
    copy = tmp_path / "course"
    for part in ("notebooks", "locales", "utils", "project"):
        if (ROOT / part).exists():
            shutil.copytree(ROOT / part, copy / part, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "tools").mkdir()
    for name in ("__init__.py", "translate.py"):
        shutil.copy(ROOT / "tools" / name, copy / "tools" / name)
    notebook = copy / "notebooks" / ENGLISH[0].name
    source = nbformat.read(notebook, as_version=4)
    cell = next(c for c in source.cells if c.cell_type == "markdown" and c.source.count(".") > 1)
    cell.source = cell.source.replace(".", ". A sentence nobody translated yet.", 1)
    nbformat.write(source, notebook)

    def translate_tool(verb):
        return subprocess.run([sys.executable, "-m", "tools.translate", verb], cwd=copy,
                              capture_output=True, text=True, timeout=300)

    assert translate_tool("update").returncode == 0
    checked = translate_tool("check")
    assert checked.returncode == 1
    assert f"notebooks/{notebook.name}, cell {cell.id}: the English changed" in checked.stderr, checked.stderr
    assert "+" in checked.stderr and "A sentence nobody translated yet." in checked.stderr


def test_the_course_answers_in_chinese(monkeypatch):
    from utils.errors import CourseError
    from utils.exercises import ex01
    from utils.training import validate_parameters

    monkeypatch.setenv("COURSE_LANGUAGE", "zh_CN")
    verdict = ex01.q1.evaluate({"default_location": 42, "client": None})
    assert verdict.line.startswith("不正确（Incorrect）：") and CJK.search(verdict.message), verdict.line
    with pytest.raises(CourseError, match=CJK.pattern):
        validate_parameters(train_size=-1)
    # A notebook's own CourseError (notebook 08's `run_id_of`): its message in Chinese, the
    # script's output below it as printed.
    assert str(CourseError("The script printed no run_id; its last lines:", "Traceback")) == \
        "脚本没有打印 run_id；它输出的最后几行是：\nTraceback"
    monkeypatch.setenv("COURSE_LANGUAGE", "en")
    with pytest.raises(CourseError, match="train_size must be"):
        validate_parameters(train_size=-1)
    assert str(CourseError("The script printed no run_id; its last lines:")) == \
        "The script printed no run_id; its last lines:"


def test_the_chinese_readme_gives_the_same_two_commands():
    def two_commands(text):
        block = re.search(r"```bash\n(make course.*?\nmake test.*?)\n```", text, re.DOTALL)
        assert block, "no block with `make course` and `make test`"
        return [line.split("#")[0].strip() for line in block.group(1).splitlines()]

    english = (ROOT / "README.md").read_text(encoding="utf-8")
    chinese = (ROOT / "README.zh-CN.md").read_text(encoding="utf-8")
    assert two_commands(chinese) == two_commands(english) == ["make course", "make test"]
    assert "README.zh-CN.md" in english.split("\n## ")[0], "README.md links the Chinese README at its top"
