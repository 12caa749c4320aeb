"""`python -m grlib run`: papermill over the notebooks, a summary, and a clear stop on failure."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from grlib import course


def write_notebook(path: Path, *sources: str, parameters: str = "profile = None") -> None:
    cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    cells += [nbformat.v4.new_code_cell(s) for s in sources]
    kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), path)


def test_unknown_notebook_is_an_error_listing_the_names():
    with pytest.raises(ValueError, match="00_setup_and_the_problem"):
        course.select_notebooks(["99"])
    assert [p.stem for p in course.select_notebooks(["01", "00"])][:2] == ["00_setup_and_the_problem",
                                                                          "01_catastrophic_forgetting"]


def test_cli_rejects_an_unknown_profile_before_running_anything(tmp_path):
    done = subprocess.run([sys.executable, "-m", "grlib", "run", "--profile", "turbo", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown profile 'turbo'" in done.stderr and "smoke, quick, full, auto" in done.stderr
    assert not (tmp_path / "notebooks").exists()


def test_a_failing_notebook_stops_the_run_and_is_named(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_fine.ipynb",
                   "from grlib.results import save_results\nsave_results('00_fine', {'answer': 42.0, 'profile': profile})")
    write_notebook(folder / "01_broken.ipynb", "x = 1", "raise RuntimeError('the lesson did not hold')")
    write_notebook(folder / "02_never.ipynb", "open('ran', 'w')")
    lines: list[str] = []
    code = course.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, log=lines.append)
    assert code == 1
    summary = (tmp_path / "build" / "summary.md").read_text()
    assert "| 00_fine | ok |" in summary and "answer 42.0, profile smoke" in summary
    assert "| 01_broken | failed |" in summary and "RuntimeError: the lesson did not hold" in summary
    assert "| 02_never | not run |" in summary and not (folder / "ran").exists()
    assert any("01_broken] FAILED" in line and "cell [4]: RuntimeError" in line for line in lines)  # [4]: papermill injects a cell
    assert (tmp_path / "build" / "notebooks" / "01_broken.ipynb").exists()  # kept, with its traceback


def test_the_runner_switches_widgets_off_only_where_a_notebook_declares_them(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_widgets.ipynb", "assert interactive is False and profile == 'smoke'",
                   parameters="profile = None\ninteractive = True")
    write_notebook(folder / "01_plain.ipynb", "assert 'interactive' not in globals()")
    lines: list[str] = []
    assert course.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, log=lines.append) == 0, lines


def test_run_smoke_course_notebook_00(tmp_path):
    out = tmp_path / "build"
    done = subprocess.run([sys.executable, "-m", "grlib", "run", "--profile", "smoke", "--only", "00", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results" / "00_setup_and_the_problem.json").read_text())
    assert results["details"]["profile"] == "smoke"
    executed = nbformat.read(out / "notebooks" / "00_setup_and_the_problem.ipynb", as_version=4)
    assert any(o.get("output_type") == "display_data" for c in executed.cells for o in c.get("outputs", []))
    summary = (out / "summary.md").read_text()
    assert "| 00_setup_and_the_problem | ok |" in summary and "task1_after_task2_class_IL" in summary
    index = (out / "report" / "index.html").read_text()
    assert 'href="00_setup_and_the_problem.html"' in index and "task1_after_task2_class_IL" in index
    page = (out / "report" / "00_setup_and_the_problem.html").read_text()
    assert page.count("data:image/png;base64") >= 3  # the figures travel inside the page
