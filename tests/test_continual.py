"""The loop, the strategies and the checkpoint cache, on a tiny synthetic stream (no datasets needed)."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from grlib import continual
from grlib.core import config
from grlib.continual.strategies import Finetune, Joint
from helpers import small_solver, synthetic_stream, untrainable


def test_finetune_forgets_and_joint_does_not():
    stream = synthetic_stream()
    ft = continual.run(Finetune(small_solver(), iters=150, batch_size=32, lr=1e-2), stream, cache=False, progress=False)
    joint = continual.run(Joint(small_solver(), iters=150, batch_size=32, lr=1e-2), stream, cache=False, progress=False)
    assert ft.R[0][0] > 95 and ft.R[1][1] > 95  # each task learned ...
    assert ft.R[1][0] < 20  # ... and the first forgotten in class-IL
    assert ft.F_T > 75 and ft.BWT < -75
    assert joint.R[1][0] > 95 and joint.A_T > 95 and joint.F_T < 5
    assert len(ft.losses) == 2 and len(ft.losses[0]) == 150 and ft.first_seen == [0, 0, 1, 1]


def test_task_incremental_keeps_more_than_class_incremental():
    results = {}
    for scenario in ("task", "class"):
        stream = synthetic_stream(scenario)
        results[scenario] = continual.run(Finetune(small_solver(), iters=150, batch_size=32, lr=1e-2), stream,
                                          cache=False, progress=False)
    assert results["task"].R[1][0] > results["class"].R[1][0] + 40


def test_scenario_logits_mask_each_sample_to_its_own_task():
    stream = synthetic_stream("task")
    logits = torch.zeros(2, 4)
    masked = continual.scenario_logits(logits, torch.tensor([1, 2]), stream)
    assert torch.isinf(masked[0, 2:]).all() and torch.isfinite(masked[0, :2]).all()
    assert torch.isinf(masked[1, :2]).all() and torch.isfinite(masked[1, 2:]).all()
    assert continual.scenario_logits(logits, torch.tensor([1, 2]), synthetic_stream("class")) is logits


class Constant(nn.Module):
    """Always predicts class `c`."""
    def __init__(self, c: int):
        super().__init__()
        self.c = c
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return nn.functional.one_hot(torch.full((len(x),), self.c), 4).float() + 0 * self.dummy


def test_evaluate_per_task_and_per_class():
    stream = synthetic_stream()
    task_acc, class_acc = continual.evaluate(Constant(2), stream)
    assert task_acc == [0.0, 50.0]  # task (2, 3) is half 2s
    assert class_acc == [0.0, 0.0, 100.0, 0.0]


def test_runs_are_deterministic():
    stream = synthetic_stream()
    a = continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, cache=False, progress=False)
    b = continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, cache=False, progress=False)
    assert a.R == b.R and a.losses == b.losses


def test_cache_reuses_checkpoints_and_retrains_corrupt_ones(tmp_path):
    stream = synthetic_stream()
    first = continual.run(Finetune(small_solver(), iters=30, batch_size=8), stream, progress=False)
    files = sorted((config.build_dir() / "checkpoints").glob("finetune-synthetic-task*.pt"))
    assert len(files) == 2
    trained = Finetune(small_solver(), iters=30, batch_size=8)
    continual.run(trained, stream, cache=False, progress=False)
    loaded = untrainable(Finetune(small_solver(), iters=30, batch_size=8))
    again = continual.run(loaded, stream, progress=False)
    assert again.R == first.R and again.losses == first.losses  # loaded, weights and all
    assert all(torch.equal(p, q) for p, q in zip(loaded.solver.parameters(), trained.solver.parameters()))

    files[1].write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="could not be used"):
        third = continual.run(Finetune(small_solver(), iters=30, batch_size=8), stream, progress=False)
    assert third.R == first.R  # task 2 retrained, exactly as before
    assert files[1].with_suffix(".corrupt").exists() and files[1].exists()


def test_changed_settings_do_not_reuse_the_cache():
    stream = synthetic_stream()
    continual.run(Finetune(small_solver(), iters=10, batch_size=8), stream, progress=False)
    continual.run(Finetune(small_solver(), iters=10, batch_size=8, lr=5e-3), stream, progress=False)
    assert len(list((config.build_dir() / "checkpoints").glob("*.pt"))) == 4


def test_bad_hyperparameters_fail_before_training():
    with pytest.raises(ValueError, match="positive"):
        Finetune(small_solver(), iters=0)


def test_eval_every_traces_accuracy_during_training_and_survives_the_cache():
    stream = synthetic_stream()
    first = continual.run(Finetune(small_solver(), iters=40, batch_size=8), stream, progress=False, eval_every=10)
    assert [(p["task"], p["step"]) for p in first.trace] == [(t, s) for t in (0, 1) for s in (0, 10, 20, 30)]
    assert first.trace[0]["accuracy"] != first.trace[3]["accuracy"]  # it learned in between
    again = continual.run(untrainable(Finetune(small_solver(), iters=40, batch_size=8)), stream, progress=False,
                           eval_every=10)
    assert again.trace == first.trace


def test_after_each_task_sees_each_task_s_weights_whether_trained_or_loaded():
    stream = synthetic_stream()

    def snapshots(strategy) -> list[torch.Tensor]:
        seen: list[torch.Tensor] = []
        continual.run(strategy, stream, progress=False,
                      after_each_task=lambda t: seen.append(next(strategy.solver.parameters()).detach().clone()))
        return seen

    trained = snapshots(Finetune(small_solver(), iters=20, batch_size=8))
    loaded = snapshots(untrainable(Finetune(small_solver(), iters=20, batch_size=8)))
    assert len(trained) == 2 and not torch.equal(trained[0], trained[1])
    assert all(torch.equal(a, b) for a, b in zip(trained, loaded))
