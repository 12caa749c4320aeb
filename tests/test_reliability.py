"""Nothing silently wrong: diverging training stops before anything is cached, non-finite numbers are never written,
and checkpoints stay whole when two processes save and load the same one at once."""
from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from grlib import checkpoints, continual, results
from grlib.guards import TrainingDivergedError
from grlib.strategies import Finetune
from test_continual import small_solver, synthetic_stream


def test_an_infinite_learning_rate_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="lr must be a finite number"):
        continual.run(Finetune(small_solver(), lr=float("inf")), synthetic_stream(), progress=False)
    assert not list((checkpoints.build_dir() / "checkpoints").glob("*.pt"))


def test_a_diverging_run_stops_with_the_strategy_task_and_step_and_caches_nothing():
    solver, calls = small_solver(), []

    def blow_up_in_task_2(module, inputs, output):  # the solver's output turns NaN on its 70th call (task 2)
        calls.append(1)
        return output * float("nan") if len(calls) >= 70 else output

    solver.register_forward_hook(blow_up_in_task_2)
    with pytest.raises(TrainingDivergedError, match=r"finetune task 2/2: the loss became nan at step \d+; lower"):
        continual.run(Finetune(solver, iters=50, batch_size=8), synthetic_stream(), progress=False)
    saved = [p.name for p in (checkpoints.build_dir() / "checkpoints").glob("*.pt")]
    assert len(saved) == 1 and "task1" in saved[0]  # task 1 kept; nothing of the diverged task 2


def test_non_finite_results_are_an_error_naming_where_they_are():
    with pytest.raises(ValueError, match=r"01_x\['details'\]\['runs'\]\[1\] is nan"):
        results.save_results("01_x", {"A_T": 50.0}, {"runs": [1.0, math.nan]})
    with pytest.raises(ValueError, match="is inf"):
        results.save_results("01_x", {"A_T": math.inf})
    assert results.load_results("01_x") is None  # nothing half-written


WRITER = """
import sys, torch
from pathlib import Path
from grlib import checkpoints
path, settings = Path(sys.argv[1]), {"name": "shared"}
for i in range(50):
    state = {"weights": torch.full((20000,), float(sys.argv[2])), "i": i}
    checkpoints.save_checkpoint(path, settings, state)
    loaded = checkpoints.load_checkpoint(path, settings)
    assert loaded is not None and loaded["weights"].unique().numel() == 1, "a mixed or broken checkpoint"
print("ok")
"""


def test_two_processes_saving_and_loading_one_checkpoint_never_mix_it(tmp_path):
    path = tmp_path / "shared.pt"
    writers = [subprocess.Popen([sys.executable, "-c", WRITER, str(path), str(value)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for value in (1.0, 2.0)]
    outputs = [w.communicate(timeout=300) for w in writers]
    assert all(w.returncode == 0 and out.strip() == "ok" for w, (out, _) in zip(writers, outputs)), outputs
    assert not list(tmp_path.glob("*.tmp")) and not list(tmp_path.glob("*.corrupt"))
    assert checkpoints.load_checkpoint(path, {"name": "shared"})["weights"].unique().tolist() in ([1.0], [2.0])


def test_a_corrupt_checkpoint_is_set_aside_once_and_a_good_one_is_left_alone(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"garbage")
    with pytest.warns(UserWarning, match="could not be used"):
        assert checkpoints.load_checkpoint(path, {}) is None
    assert path.with_suffix(".corrupt").exists() and not path.exists()
    checkpoints.save_checkpoint(path, {}, {"x": torch.ones(2)})
    assert checkpoints.load_checkpoint(path, {})["x"].tolist() == [1.0, 1.0]


def test_a_checkpoint_is_as_readable_as_any_file_this_process_writes(tmp_path):
    """Learners sharing one checkpoint folder read each other's models: a checkpoint gets the permissions the
    umask gives a plain file, not the temporary file's private ones."""
    path = tmp_path / "model.pt"
    checkpoints.save_checkpoint(path, {"a": 1}, {"w": torch.zeros(2)})
    (tmp_path / "plain").write_bytes(b"")
    assert path.stat().st_mode & 0o777 == (tmp_path / "plain").stat().st_mode & 0o777


def test_a_bench_record_parameter_must_be_a_readable_record(tmp_path):
    from grlib import params

    rule = params.json_file("command", "runs", optional=True)
    good, partial, broken = tmp_path / "good.json", tmp_path / "partial.json", tmp_path / "broken.json"
    good.write_text('{"command": "python -m grlib bench", "runs": []}')
    partial.write_text('{"command": "python -m grlib bench"}')
    broken.write_text('{"command": ')
    assert rule.check("") is None and rule.check(str(good)) is None
    assert "lacks runs" in rule.check(str(partial))
    assert "JSONDecodeError" in rule.check(str(broken))
    assert "FileNotFoundError" in rule.check(str(tmp_path / "missing.json"))
    with pytest.raises(params.ParameterError, match="parameter bench_record = .*lacks runs"):
        params.check({"profile": "smoke", "bench_record": str(partial)}, bench_record=rule)


def test_two_processes_asking_for_one_model_at_once_train_it_once(tmp_path, capsys):
    """The second waits for the first's checkpoint instead of training its own copy (threads stand in for processes:
    each takes the lock through its own file descriptor, as a process would)."""
    import threading
    import time
    from concurrent.futures import ThreadPoolExecutor

    trained, first_started = [], threading.Event()

    def train() -> dict:
        trained.append(1)
        first_started.set()
        time.sleep(1.0)  # long enough for the other to ask meanwhile
        return {"w": torch.ones(3)}

    def ask(delay: float) -> dict:
        if delay:
            first_started.wait(10)
        return checkpoints.cached("model", {"a": 1}, train, folder=tmp_path)

    with ThreadPoolExecutor(2) as pool:
        states = list(pool.map(ask, (0.0, 1.0)))
    assert len(trained) == 1 and all(s["w"].tolist() == [1.0, 1.0, 1.0] for s in states)
    assert "another process is training model-" in capsys.readouterr().out
