"""`python -m grlib run`: papermill over the notebooks, a summary, and a clear stop on failure."""
from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest

import grlib.course.cli as cli
from helpers import running, sigterm_when, wait_until, write_notebook
from grlib.core import config
from grlib.course import notebooks, runner, sweep


def test_unknown_notebook_is_an_error_listing_the_names():
    with pytest.raises(ValueError, match="00_setup_and_the_problem"):
        notebooks.select_notebooks(["99"])
    assert [p.stem for p in notebooks.select_notebooks(["01", "00"])][:2] == ["00_setup_and_the_problem",
                                                                          "01_catastrophic_forgetting"]


def test_cli_rejects_an_unknown_profile_before_running_anything(tmp_path):
    done = subprocess.run([sys.executable, "-m", "grlib", "run", "--profile", "turbo", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert done.returncode == 2
    assert "unknown profile 'turbo'" in done.stderr and "smoke, quick, full, auto" in done.stderr
    assert not (tmp_path / "notebooks").exists()


def test_a_failing_notebook_stops_the_run_and_is_named(tmp_path, folder):
    write_notebook(folder / "00_fine.ipynb",
                   "from grlib.course.results import save_results\nsave_results('00_fine', {'answer': 42.0, 'profile': profile})")
    write_notebook(folder / "01_broken.ipynb", "x = 1", "raise RuntimeError('the lesson did not hold')")
    write_notebook(folder / "02_never.ipynb", "open('ran', 'w')")
    lines: list[str] = []
    code = runner.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, log=lines.append)
    assert code == 1
    summary = (tmp_path / "build" / "summary.md").read_text()
    assert "| 00_fine | ok |" in summary and "answer 42.0, profile smoke" in summary
    assert "| 01_broken | failed |" in summary and "RuntimeError: the lesson did not hold" in summary
    assert "| 02_never | not run |" in summary and not (folder / "ran").exists()
    assert any("01_broken] FAILED" in line and "cell [4]: RuntimeError" in line for line in lines)  # [4]: papermill injects a cell
    assert (tmp_path / "build" / "notebooks" / "01_broken.ipynb").exists()  # kept, with its traceback
    assert any(line.startswith("1 notebook(s) in 0 min ") for line in lines), lines  # the run's time, to the second


def test_the_runner_gives_the_profile_and_no_widgets_as_parameters(tmp_path, folder):
    """The profile and `interactive` reach a notebook as papermill parameters (the environment's profile, smoke in
    the tests, is not what the notebook sees); progress bars are text lines."""
    write_notebook(folder / "00_widgets.ipynb", "import os\nassert interactive is False and profile == 'quick'\n"
                   "assert os.environ['GRLIB_PROGRESS'] == 'text'", parameters="profile = None\ninteractive = True")
    lines: list[str] = []
    assert runner.run_course(profile="quick", out=str(tmp_path / "build"), folder=folder, log=lines.append) == 0, lines


def test_parameters_reach_the_notebooks_that_declare_them_and_bad_ones_are_named(tmp_path, folder):
    write_notebook(folder / "00_scaled.ipynb", "assert (scale, seed) == (1.5, 2), (scale, seed)",
                   parameters="profile = None\nscale = 3.0\nseed = 0")
    write_notebook(folder / "01_plain.ipynb", "assert 'scale' not in globals()")
    out = str(tmp_path / "build")
    lines: list[str] = []
    code = runner.run_course(profile="smoke", out=out, folder=folder, log=lines.append,
                             parameters={"scale": 1.5, "seed": 2})
    assert code == 0, lines
    with pytest.raises(ValueError, match=r"no chosen notebook has a parameter 'scal'.*00_scaled: profile, scale, seed"):
        runner.run_course(profile="smoke", out=out, folder=folder, parameters={"scal": 1.5})
    with pytest.raises(ValueError, match=r"parameter seed = 'x' of 00_scaled must be a int"):
        runner.run_course(profile="smoke", out=out, folder=folder, parameters={"seed": "x"})


@pytest.mark.parametrize("out", ["a-file", "/proc/grlib-cannot-write-here"])
def test_an_unusable_out_folder_is_one_line_and_exit_2(tmp_path, out):
    target = tmp_path / out if out == "a-file" else out
    if out == "a-file":
        target.write_text("not a folder")
    done = subprocess.run([sys.executable, "-m", "grlib", "run", "--profile", "smoke", "--only", "00", "--out",
                           str(target)], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and done.stderr.startswith("error: ")
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_ends_with_one_line_a_summary_and_exit_130(tmp_path, folder, jobs):
    write_notebook(folder / "00_quick.ipynb", "from grlib.course.results import save_results\nsave_results('00_quick', {'a': 1.0})")
    write_notebook(folder / "01_slow.ipynb", "import pathlib, time\npathlib.Path('started').touch()\ntime.sleep(60)")
    write_notebook(folder / "02_slow_too.ipynb", "import pathlib, time\npathlib.Path('started-too').touch()\ntime.sleep(60)")
    script = (f"import sys; from pathlib import Path; from grlib.course import runner; "
              f"sys.exit(runner.run_course(profile='smoke', out={str(tmp_path / 'build')!r}, folder=Path({str(folder)!r}), "
              f"jobs={jobs}))")
    run = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True,  # as from a terminal: Ctrl-C not ignored, whatever this process does
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    started = ["started", "started-too"][:jobs]  # with 2 jobs 02 starts when 00 ends
    wait_until(lambda: all((folder / name).exists() for name in started), 120)  # their first cells ran
    time.sleep(1)  # into its sleep
    os.killpg(run.pid, signal.SIGINT)  # what Ctrl-C in a terminal sends: the whole process group
    stdout, stderr = run.communicate(timeout=120)
    assert run.returncode == 130, stdout + stderr
    assert "interrupted; 1 notebook(s) finished, models kept in" in stdout and "Traceback" not in stdout + stderr
    summary = (tmp_path / "build" / "summary.md").read_text()
    assert "| 00_quick | ok |" in summary and "| 01_slow | interrupted |" in summary
    assert f"| 02_slow_too | {'interrupted' if jobs == 2 else 'not run'} |" in summary


MEET = ("import pathlib, time\npathlib.Path('{me}').touch()\ndeadline = time.time() + 60\n"
        "while not pathlib.Path('{other}').exists() and time.time() < deadline:\n    time.sleep(0.1)\n"
        "assert pathlib.Path('{other}').exists(), 'ran alone'")


def test_jobs_run_notebooks_side_by_side_and_one_that_reads_results_after_them(tmp_path, folder):
    save = "from grlib.course.results import save_results\nsave_results('{}', {{'a': 1.0}})"
    write_notebook(folder / "00_a.ipynb", MEET.format(me="a", other="b"), save.format("00_a"))
    write_notebook(folder / "01_b.ipynb", MEET.format(me="b", other="a"), "import time\ntime.sleep(3)",
                   save.format("01_b"))  # each waits until the other has started: they ran at the same time
    write_notebook(folder / "02_reader.ipynb", "from grlib.course.results import load_results\n"
                   "assert load_results('00_a') and load_results('01_b'), 'started before what it reads ended'",
                   reads=["00", "01"])
    lines: list[str] = []
    assert runner.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, log=lines.append,
                             jobs=3) == 0, lines
    assert "3 at a time" in lines[0]
    assert [p.stem for p in notebooks.list_notebooks(folder) if notebooks.notebook_reads(p)] == ["02_reader"]


WAIT_FOR = ("import pathlib, time\ndeadline = time.time() + 60\n"
            "while not pathlib.Path('{marker}').exists() and time.time() < deadline:\n    time.sleep(0.1)\n"
            "assert pathlib.Path('{marker}').exists(), 'started alone'")


def test_with_jobs_the_longest_notebook_starts_first(tmp_path, folder):
    """Side by side, the longest start first, so that the last ones end together (one at a time: in order)."""
    write_notebook(folder / "00_short.ipynb", "import pathlib\nassert pathlib.Path('long-started').exists()", seconds=5)
    write_notebook(folder / "01_middle.ipynb", WAIT_FOR.format(marker="long-started"), seconds=65)
    write_notebook(folder / "02_long.ipynb", "import pathlib\npathlib.Path('long-started').touch()", seconds=736)
    assert [notebooks.course_seconds(p) for p in notebooks.list_notebooks(folder)] == [5, 65, 736]
    lines: list[str] = []
    assert runner.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, log=lines.append,
                             jobs=2) == 0, lines
    assert "2 at a time (the longest chain first)" in lines[0]


def test_with_jobs_a_short_notebook_whose_models_a_long_one_loads_starts_with_it(tmp_path, folder):
    """A notebook that loads another's cached models (grlib.loads) heads a chain as long as its own plus the
    loader's: the one that trains the models starts first, though a middle one is longer than it."""
    write_notebook(folder / "00_trainer.ipynb", "import pathlib\npathlib.Path('trainer-started').touch()", seconds=5)
    write_notebook(folder / "01_middle.ipynb", "import pathlib\nassert pathlib.Path('trainer-started').exists()",
                   seconds=65)
    write_notebook(folder / "02_loader.ipynb", WAIT_FOR.format(marker="trainer-started"), seconds=736, loads=["00"])
    found = notebooks.list_notebooks(folder)
    assert [p.stem for p in notebooks.queue_order(found)] == ["00_trainer", "02_loader", "01_middle"]
    lines: list[str] = []
    assert runner.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, log=lines.append,
                             jobs=2) == 0, lines


def test_with_jobs_a_failure_lets_the_running_notebook_finish_and_starts_no_other(tmp_path, folder, monkeypatch):
    start_dir, chdir = os.getcwd(), os.chdir

    def refuse_chdir(path: str) -> None:  # the runner's threads share one working directory: none may change it
        assert str(path) == start_dir, f"the runner changed the whole process's working directory to {path}"
        chdir(path)

    monkeypatch.setattr(os, "chdir", refuse_chdir)
    write_notebook(folder / "00_slow.ipynb", "import time\ntime.sleep(5)\nopen('slow-ended', 'w')")
    write_notebook(folder / "01_broken.ipynb", "raise RuntimeError('the lesson did not hold')")
    write_notebook(folder / "02_never.ipynb", "open('ran', 'w')")
    lines: list[str] = []
    assert runner.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, log=lines.append,
                             jobs=2) == 1
    summary = (tmp_path / "build" / "summary.md").read_text()
    assert "| 00_slow | ok |" in summary and "| 01_broken | failed |" in summary and "| 02_never | not run |" in summary
    assert (folder / "slow-ended").exists() and not (folder / "ran").exists()
    with pytest.raises(ValueError, match="--jobs must be a whole number of at least 1, got 0"):
        runner.run_course(profile="smoke", out=str(tmp_path / "build"), folder=folder, jobs=0)


def test_run_smoke_course_notebook_00(tmp_path):
    out = tmp_path / "build"
    done = subprocess.run([sys.executable, "-m", "grlib", "run", "--profile", "smoke", "--only", "00", "--out", str(out)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    results = json.loads((out / "results" / "00_setup_and_the_problem.json").read_text())
    assert results["details"]["profile"] == "smoke"
    assert results["profile"] == "smoke" and results["parameters"] == {"seed": 0}  # what made them, recorded
    executed = nbformat.read(out / "notebooks" / "00_setup_and_the_problem.ipynb", as_version=4)
    assert any(o.get("output_type") == "display_data" for c in executed.cells for o in c.get("outputs", []))
    summary = (out / "summary.md").read_text()
    assert "| 00_setup_and_the_problem | ok |" in summary and "task1_after_task2_class_IL" in summary
    index = (out / "report" / "index.html").read_text()
    assert 'href="00_setup_and_the_problem.html"' in index and "task1_after_task2_class_IL" in index
    page = (out / "report" / "00_setup_and_the_problem.html").read_text()
    assert page.count("data:image/png;base64") >= 3  # the figures travel inside the page


CHECKED = ("from grlib.course import params\n"
           "params.check(globals(), seed=params.integer(min=0), scale=params.number(min=0, max=100))")


@pytest.fixture
def toy_course(tmp_path, monkeypatch):
    """`python -m grlib` (its `main`, in this process) over a course of one notebook, tmp_path/course/notebooks/
    00_toy, which checks its parameters as the course's do; the working directory is the course's root."""
    root = tmp_path / "course"
    (root / "notebooks").mkdir(parents=True)
    write_notebook(root / "notebooks" / "00_toy.ipynb", CHECKED, "from grlib.course.results import save_results\n"
                   "save_results('00_toy', {'a': 1.0})", parameters="profile = None\nseed = 0\nscale = 3.0")
    for name, function in (("run_course", runner.run_course), ("write_student_copy", notebooks.write_student_copy),
                           ("run_sweep", sweep.run_sweep)):
        monkeypatch.setattr(cli, name, functools.partial(function, folder=root / "notebooks"))
    monkeypatch.setattr(cli, "stop_on_signals", lambda: None, raising=False)  # this test process keeps its own
    monkeypatch.chdir(root)
    return root / "notebooks"


@pytest.mark.parametrize("argv", [["run", "--out", ""], ["run", "--out", "."], ["run", "--out", "notebooks"],
                                  ["run", "--out", "notebooks/sub"], ["sweep", "00", "-p", "seed", "0", "--out", "."],
                                  ["student", "--out", "notebooks"], ["student", "--out", "."]],
                         ids=" ".join)
def test_an_out_folder_that_could_write_over_the_notebooks_is_refused(toy_course, argv, capsys):
    before = {p.name: p.read_bytes() for p in toy_course.iterdir()}
    assert cli.main(argv + ([] if argv[0] == "student" else ["--profile", "smoke"])) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and ("--out is empty" in err or "would write over the course's own notebooks" in err)
    assert {p.name: p.read_bytes() for p in toy_course.iterdir()} == before


def test_the_course_s_own_root_and_notebooks_are_never_a_build_folder():
    for out in (config.REPO_ROOT, notebooks.NOTEBOOK_DIR, notebooks.NOTEBOOK_DIR / "build"):
        with pytest.raises(ValueError, match="would write over the course's own notebooks"):
            notebooks.outside_sources(out)


@pytest.mark.parametrize("argv, said", [
    (["run", "-p", "profile", "quick"], "the profile is chosen with --profile (e.g. --profile quick), not with -p"),
    (["sweep", "00", "-p", "profile", "smoke", "quick"], "the profile is chosen with --profile"),
    (["run", "-p", "seed", "0", "-p", "seed", "1"], "-p seed given more than once"),
    (["sweep", "00", "-p", "seed", "0", "-p", "seed", "1"], "-p seed given more than once"),
    (["sweep", "00", "-p", "seed", "0", "0"], "-p seed gives 0 more than once; give each value once"),
    (["run", "-p", "seed", "-1"], "00_toy: parameter seed = -1: it must be a whole number in [0, ∞]"),
    (["run", "-p", "scale", "1e300"], "00_toy: parameter scale = 1e+300: it must be a number ≥ 0 and ≤ 100"),
    (["sweep", "00", "-p", "scale", "1", "1e300"], "parameter scale = 1e+300"),
])
def test_bad_parameters_are_one_line_and_exit_2_before_any_kernel_starts(toy_course, tmp_path, argv, said, capsys):
    out = tmp_path / "build"
    assert cli.main(argv + ["--profile", "smoke", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and said in err, err
    assert not (out / "notebooks").exists() and not (out / "sweeps").exists()  # nothing ran


def test_the_course_notebooks_own_range_checks_run_before_any_kernel_starts():
    with pytest.raises(ValueError, match="00_setup_and_the_problem: parameter seed = -1: it must be a whole number"):
        notebooks.check_parameters(notebooks.select_notebooks(["00"]), {"seed": -1})
    with pytest.raises(ValueError, match="02_experience_replay: parameter buffer_size = 5"):
        notebooks.check_parameters(notebooks.select_notebooks(["02"]), {"buffer_size": 5})


def test_sigterm_stops_a_run_and_its_kernel_as_ctrl_c_does(tmp_path, folder):
    write_notebook(folder / "00_slow.ipynb", "import pathlib, time\npathlib.Path('started').touch()\ntime.sleep(120)")
    script = (f"import functools, sys; from pathlib import Path; import grlib.course.cli as cli; "
              f"from grlib.course import runner; cli.run_course = functools.partial(runner.run_course, folder=Path({str(folder)!r})); "
              f"sys.exit(cli.main(['run', '--profile', 'smoke', '--jobs', '1', '--out', {str(tmp_path / 'build')!r}]))")
    code, stdout, stderr, children = sigterm_when(script, (folder / "started").exists, 120)
    assert children, "the run started no kernel"
    assert code == 130 and "interrupted; 0 notebook(s) finished" in stdout, stdout + stderr
    assert "| 00_slow | interrupted |" in (tmp_path / "build" / "summary.md").read_text()
    assert wait_until(lambda: not running(children), 10)
