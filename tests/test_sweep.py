"""`python -m grlib sweep`: a grid of papermill runs of one notebook, gathered into a table and plots; resumable."""
from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import running, sigterm_when, wait_until, write_notebook
from grlib.course import sweep

REPO = Path(__file__).resolve().parents[1]
SCORE = "from grlib.course.results import save_results\nsave_results('00_toy', {'score': scale * 10 + seed, 'half': scale / 2})"


@pytest.fixture
def toy(folder):
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
    assert "../sweeps/00-smoke-scale-seed/index.html" in (out / "report" / "index.html").read_text()
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


def test_a_sweep_under_another_profile_is_run_again_not_taken_for_done(tmp_path, folder):
    write_notebook(folder / "00_toy.ipynb", "from grlib.course.results import save_results\n"
                   "save_results('00_toy', {'score': {'smoke': 1, 'quick': 2}[profile] + seed})",
                   parameters="profile = None\nseed = 0")
    out = str(tmp_path / "build")
    smoke = sweep.run_sweep("00", {"seed": [0]}, profile="smoke", out=out, folder=folder, log=lambda line: None)
    quick = sweep.run_sweep("00", {"seed": [0]}, profile="quick", out=out, folder=folder, log=lambda line: None)
    assert quick["ran"] == 1 and quick["folder"] != smoke["folder"]
    assert [r["headline"]["score"] for r in (*smoke["rows"], *quick["rows"])] == [1, 2]
    assert "profile quick" in (quick["folder"] / "table.md").read_text() and "| 2.00 | 1 |" in quick["table"]
    named = sweep.run_sweep("00", {"seed": [0]}, profile="smoke", out=out, folder=folder, log=lambda line: None,
                            name=quick["folder"].name)  # the same folder, by name: its run is of another profile
    assert named["ran"] == 1 and named["rows"][0]["headline"]["score"] == 1


def test_a_failed_run_is_named_left_out_of_the_table_and_run_again(tmp_path, folder):
    write_notebook(folder / "00_toy.ipynb", "from grlib.course.results import save_results\n"
                   "save_results('00_toy', {'score': 10 + seed})", "assert seed != 1, 'the lesson did not hold'",
                   parameters="profile = None\nseed = 0")  # as a lesson's assert after its results are saved
    out, lines = str(tmp_path / "build"), []
    for _ in range(2):
        with pytest.raises(RuntimeError, match="1 run\\(s\\) failed: seed=1"):
            sweep.run_sweep("00", {"seed": [0, 1]}, profile="smoke", out=out, folder=folder, log=lines.append)
    started = [line.split(", ")[1] for line in lines if line.startswith("sweep of 00_toy: 2 runs, ")]
    assert started == ["0 already done", "1 already done"]  # the failed run is run again
    table = next((tmp_path / "build" / "sweeps").glob("*")) / "table.md"
    assert "| 10.00 | 1 |" in table.read_text() and "11.00" not in table.read_text()
    assert "Failed, so left out (the next sweep runs them again): seed=1" in table.read_text()


def test_sigterm_stops_a_sweep_its_papermill_processes_and_kernels(tmp_path, folder):
    write_notebook(folder / "00_slow.ipynb", "import pathlib, time\npathlib.Path(f'started-{seed}').touch()\n"
                   "time.sleep(120)", parameters="profile = None\nseed = 0")
    script = (f"import functools, sys; from pathlib import Path; import grlib.course.cli as cli; "
              f"from grlib.course import sweep; cli.run_sweep = functools.partial(sweep.run_sweep, folder=Path({str(folder)!r})); "
              f"sys.exit(cli.main(['sweep', '00', '-p', 'seed', '0', '1', '--jobs', '2', '--profile', 'smoke', "
              f"'--out', {str(tmp_path / 'build')!r}]))")
    code, stdout, stderr, children = sigterm_when(
        script, lambda: all((folder / f"started-{seed}").exists() for seed in (0, 1)), 180)
    assert len(children) >= 4, "two papermill processes and their kernels"
    assert code == 130 and "interrupted; rerun the same command" in stderr, stdout + stderr
    assert wait_until(lambda: not running(children), 10)
    assert not list((tmp_path / "build" / "sweeps").glob("*/*/run.json"))  # neither counts as done
