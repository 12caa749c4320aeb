"""`python -m grlib sweep`: a grid of papermill runs of one notebook, gathered into a table and plots; resumable."""
from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from grlib import sweep
from test_runner import write_notebook

REPO = Path(__file__).resolve().parents[1]
SCORE = "from grlib.results import save_results\nsave_results('00_toy', {'score': scale * 10 + seed, 'half': scale / 2})"


@pytest.fixture
def toy(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    write_notebook(folder / "00_toy.ipynb", SCORE, parameters="profile = None\nscale = 1.0\nseed = 0")
    return folder


def test_a_two_by_two_sweep_writes_its_table_and_plots_and_a_rerun_does_nothing(toy, tmp_path):
    out = tmp_path / "build"
    lines: list[str] = []
    first = sweep.run_sweep("00", {"scale": [1.0, 2.0], "seed": [0, 1]}, profile="smoke", out=str(out), jobs=2,
                            folder=toy, log=lines.append)
    assert first["ran"] == 4 and len(first["rows"]) == 4
    table = (first["folder"] / "table.md").read_text()
    assert "| scale | half | score | runs |" in table
    assert "| 1.0 | 0.50 ± 0.00 | 10.50 ± 0.71 | 2 |" in table and "| 2.0 | 1.00 ± 0.00 | 20.50 ± 0.71 | 2 |" in table
    assert (first["folder"] / "score.png").exists() and (first["folder"] / "index.html").exists()
    for run in ("scale=1.0,seed=0", "scale=2.0,seed=1"):
        assert (first["folder"] / run / "00_toy.ipynb").exists()  # each run's executed notebook is kept
    assert "../sweeps/00-scale-seed/index.html" in (out / "report" / "index.html").read_text()
    again = sweep.run_sweep("00", {"scale": [1.0, 2.0], "seed": [0, 1]}, profile="smoke", out=str(out), folder=toy,
                            log=lines.append)
    assert again["ran"] == 0 and again["table"] == first["table"]


def test_dry_run_prints_one_papermill_command_a_run_and_runs_nothing(toy, tmp_path):
    lines: list[str] = []
    sweep.run_sweep("00", {"scale": [1.0, 3.0], "seed": [0, 1, 2]}, profile="smoke", out=str(tmp_path / "b"),
                    dry_run=True, folder=toy, log=lines.append)
    assert len(lines) == 6 and all("-m papermill" in line and "-p scale" in line for line in lines)
    assert "GRLIB_CHECKPOINTS=" in lines[0] and not (tmp_path / "b" / "sweeps").exists()


def test_a_dry_run_piped_into_a_reader_that_stops_early_ends_quietly(tmp_path):
    scales, seeds = " ".join(map(str, range(20))), " ".join(map(str, range(10)))  # 200 lines: more than a pipe holds
    piped = subprocess.run(f"{shlex.quote(sys.executable)} -m grlib sweep 06 -p guidance_scale {scales} -p seed "
                           f"{seeds} --profile smoke --out {tmp_path} --dry-run | head -1", shell=True,
                           capture_output=True, text=True, cwd=REPO)
    assert piped.stdout.count("papermill") == 1 and "Traceback" not in piped.stderr


def test_bad_sweeps_are_one_line_errors():
    done = subprocess.run([sys.executable, "-m", "grlib", "sweep", "06", "-p", "guidance_scal", "0", "1",
                           "--dry-run"], capture_output=True, text=True)
    assert done.returncode == 2 and "no chosen notebook has a parameter 'guidance_scal'" in done.stderr
    done = subprocess.run([sys.executable, "-m", "grlib", "sweep", "06", "-p", "seed", "--dry-run"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "a name and at least one value" in done.stderr
