"""Notebooks are stored clean: no outputs, and a tagged parameters cell first with the profile in it."""
import json
import re

import pytest

from grlib.course.notebooks import NOTEBOOK_DIR, course_seconds, list_notebooks, notebook_loads

NOTEBOOKS = list_notebooks(NOTEBOOK_DIR)
RUNNING_TIME = re.compile(r"\*\*Running time:\*\*\s+(?:under a minute|about \d+ min) on the quick profile")


def test_the_course_has_its_first_notebooks():
    names = [p.stem[:2] for p in NOTEBOOKS]
    assert names[:2] == ["00", "01"] and names == sorted(set(names))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_stored_without_outputs(path):
    cells = json.loads(path.read_text())["cells"]
    for i, cell in enumerate(c for c in cells if c["cell_type"] == "code"):
        assert not cell.get("outputs") and cell.get("execution_count") is None, f"code cell {i} has outputs"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_first_code_cell_is_the_tagged_parameters_cell(path):
    code = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert "parameters" in code[0].get("metadata", {}).get("tags", [])
    assert "profile = None" in "".join(code[0]["source"])


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_control_characters_in_the_text(path):
    r"""A LaTeX command whose backslash was read as an escape (\frac as a form feed, \beta as a backspace) leaves a
    control character that breaks the equation it sits in."""
    for i, cell in enumerate(json.loads(path.read_text())["cells"]):
        bad = sorted({hex(ord(ch)) for ch in "".join(cell["source"]) if ord(ch) < 32 and ch not in "\n\t"})
        assert not bad, f"cell {i} holds control characters {bad}"


def markdown(cells: list[dict]) -> list[str]:
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "markdown"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_notebook_meets_the_course_standard(path):
    """Objectives first, an Exercises section with at least three worked solutions, no unfilled placeholders, and
    lesson text about the subject only (nothing about how the course was made)."""
    cells = json.loads(path.read_text())["cells"]
    text = markdown(cells)
    assert re.search(r"^## Learning objectives", text[0], re.M), "the first cell states the learning objectives"
    assert re.search(r"\*\*Prerequisites[:.]?\*\*", text[0])
    assert RUNNING_TIME.search(text[0]), "the first cell says: **Running time:** about 5 min on the quick profile"
    assert "| this notebook |" in text[0], "the first cell compares the paper with this notebook"
    assert any(re.search(r"^## Exercises", t, re.M) for t in text)
    assert sum("solution" in c.get("metadata", {}).get("tags", []) for c in cells) >= 3
    everything = "".join("".join(c["source"]) for c in cells)
    assert "{{" not in everything, "a placeholder was left unfilled"
    assert not re.search(r"prototype (course|notebook)|course's (issues|prototype)|this issue|earlier version of (the|this) course", everything, re.I), "speak about the subject only"


def test_the_student_copy_has_no_solutions(tmp_path):
    from grlib.course.notebooks import write_student_copy

    written = write_student_copy(tmp_path)
    assert [p.name for p in written] == [p.name for p in NOTEBOOKS]
    for original, copy in zip(NOTEBOOKS, written):
        full, student = json.loads(original.read_text())["cells"], json.loads(copy.read_text())["cells"]
        solutions = sum("solution" in c.get("metadata", {}).get("tags", []) for c in full)
        assert solutions >= 3 and len(student) == len(full) - solutions
        assert not any("solution" in c.get("metadata", {}).get("tags", []) for c in student)
        assert any(re.search(r"^## Exercises", t, re.M) for t in markdown(student)), "the exercises stay"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_results_are_saved_under_the_notebooks_own_name(path):
    """The runner's summary reads each notebook's headline from build/results/<its name>.json."""
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    assert set(re.findall(r"save_results\(\s*\"([^\"]+)\"", code)) == {path.stem}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_that_reads_others_results_declares_them_for_the_runner(path):
    """`python -m grlib run --jobs N` starts a notebook only after those in its metadata's grlib.reads: they must be
    every notebook its code names (as "04" or "04_deep_generative_replay") when it calls load_results."""
    from grlib.course.notebooks import notebook_reads

    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    named = set(re.findall(r"\"(\d\d)(?:_[a-z_]+)?\"", code)) - {path.stem[:2]} if "load_results(" in code else set()
    assert set(notebook_reads(path)) == named
    assert all(n < path.stem[:2] for n in named), "a notebook reads only the results of notebooks before it"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_that_loads_notebook_03s_models_declares_it_for_the_runner(path):
    """Notebook 03 trains the WGAN-GP and the judge (`recipes.mnist_wgan`, `recipes.judge`); a later notebook that
    loads them names 03 in its metadata's grlib.loads, so that the runner starts 03 first and the later one finds
    them trained instead of training them itself; it may name other earlier notebooks whose models it loads. Each
    notebook also gives the seconds it took alone (grlib.seconds), which orders the runner's queue."""
    code = "".join("".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code")
    uses_03 = path.stem[:2] > "03" and re.search(r"recipes\.(mnist_wgan|judge)\(", code) is not None
    assert ("03" in notebook_loads(path)) == bool(uses_03)
    assert all(n < path.stem[:2] for n in notebook_loads(path)), "a notebook loads only earlier notebooks' models"
    assert course_seconds(path) > 0
