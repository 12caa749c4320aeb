"""The benchmark command (smoke scale, real MNIST) and the replay explorer (headless)."""
import json
import subprocess
import sys

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from grlib.course import bench, tune, widgets  # noqa: E402


def test_bench_writes_mean_and_std_per_method(tmp_path):
    lines = []
    out = bench.run_bench(profile="smoke", seeds=2, methods=["finetune", "er"], out=str(tmp_path), log=lines.append)
    saved = json.loads((tmp_path / "bench.json").read_text())
    assert saved["profile"]["name"] == "smoke" and len(saved["runs"]) == 4
    er = [r["A_T"] for r in saved["runs"] if r["method"] == "er"]
    finetune = [r["A_T"] for r in saved["runs"] if r["method"] == "finetune"]
    assert min(er) > max(finetune) + 20
    table = (tmp_path / "bench.md").read_text()
    assert "| er |" in table and "±" in table and out["table"] in table
    assert all(r["peak_memory_MB"] > 100 for r in saved["runs"])  # torch and MNIST are in every worker
    assert any("[bench] er, seed 1" in line for line in lines)
    assert saved["command"] == "python -m grlib bench --profile smoke --seeds 2 --methods finetune er"
    assert saved["commit"] and "cores" in saved["machine"]  # enough to reproduce the record, and to read its times


def test_bench_rejects_bad_arguments_before_running():
    done = subprocess.run([sys.executable, "-m", "grlib", "bench", "--methods", "finetune", "magic"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "unknown method(s) magic" in done.stderr
    with pytest.raises(ValueError, match="at least 1"):
        bench.run_bench(profile="smoke", seeds=0)


def test_explorer_draws_static_figures_without_widgets():
    runs = {"DGR": {"R": [[100.0, 0.0], [90.0, 99.0]], "samples": [torch.zeros(4, 1, 28, 28, dtype=torch.uint8)]},
            "fine-tuning": {"R": [[100.0, 0.0], [0.0, 99.0]], "samples": None}}
    plt.close("all")
    widgets.replay_explorer(runs, ["0/1", "2/3"], interactive=False)
    assert len(plt.get_fignums()) == 2  # one static figure per method
    figure = plt.figure(plt.get_fignums()[0])
    assert "generated after task 1 (not trained on task 2, the last)" in figure.axes[0].get_title()
    plt.close("all")
    widgets.replay_explorer(runs, ["0/1", "2/3"], interactive=True)  # builds the widgets and returns
    assert len(plt.get_fignums()) >= 2
    plt.close("all")


def test_tune_records_a_grid_on_the_validation_split(tmp_path):
    lines = []
    record = tune.run_tune("mas", "strength", [0.1, 1e4], seeds=2, profile="smoke", out=str(tmp_path),
                           log=lines.append)
    saved = json.loads((tmp_path / "tune" / "mas-split-strength.json").read_text())
    assert saved == json.loads(json.dumps(record)) and saved["validation"] == tune.VALIDATION
    assert [(r["value"], r["seed"]) for r in saved["runs"]] == [(0.1, 0), (0.1, 1), (1e4, 0), (1e4, 1)]
    assert len({r["A_T"] for r in saved["runs"]}) > 1  # the values and seeds are really different runs
    assert saved["command"].startswith("python -m grlib tune mas --stream split --profile smoke --seeds 2")
    assert saved["settings"] == {}  # MAS's recipe holds only the swept strength: nothing else was in effect
    assert "| 0.1 |" in lines[-1] and "**" in lines[-1]


def test_tune_rejects_an_unknown_setting_before_running():
    done = subprocess.run([sys.executable, "-m", "grlib", "tune", "mas", "--grid", "strenth", "1"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "mas has no setting strenth" in done.stderr
