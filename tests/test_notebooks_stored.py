"""Notebooks are stored clean: no outputs, and a tagged parameters cell first with the profile in it."""
import json

import pytest

from grlib.course import NOTEBOOK_DIR, list_notebooks

NOTEBOOKS = list_notebooks(NOTEBOOK_DIR)


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
