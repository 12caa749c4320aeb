"""Processes training at once share the machine's cores (grlib.core.threads)."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from grlib.core import threads


@pytest.fixture
def registry(tmp_path, monkeypatch):
    monkeypatch.setattr(threads, "REGISTRY", tmp_path / "training")
    monkeypatch.setattr(threads, "_counted", True)
    monkeypatch.setattr(threads, "_started", False)
    monkeypatch.setattr(threads, "_last_share", -float("inf"))
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv("GRLIB_THREADS", raising=False)
    (tmp_path / "training").mkdir()
    before = torch.get_num_threads()
    yield tmp_path / "training"
    threads.leave()
    torch.set_num_threads(before)


@pytest.fixture
def other_process():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def test_nothing_is_shared_before_start(registry, other_process, monkeypatch):
    monkeypatch.setattr(threads, "CORES", 4)
    torch.set_num_threads(3)
    (registry / str(other_process)).touch()
    assert threads.share() == 3 and list(threads.paced(range(3))) == [0, 1, 2]
    assert torch.get_num_threads() == 3 and not (registry / str(os.getpid())).exists()
    assert threads.start() == 2 and torch.get_num_threads() == 2 and (registry / str(os.getpid())).exists()


def test_grlib_threads_fixes_the_threads_at_start(registry, other_process, monkeypatch):
    monkeypatch.setattr(threads, "CORES", 4)
    monkeypatch.setenv("GRLIB_THREADS", "3")
    assert threads.start() == 3 and torch.get_num_threads() == 3
    (registry / str(other_process)).touch()
    assert threads.share() == 3 and not (registry / str(os.getpid())).exists()


def test_only_other_live_processes_that_trained_recently_count(registry, other_process):
    threads.start()  # this process: never counted for itself
    (registry / str(other_process)).touch()
    assert threads.others_training() == 1
    old = time.time() - threads.RECENT_S - 1
    os.utime(registry / str(other_process), (old, old))
    assert threads.others_training() == 0, "an idle process stops counting"
    finished = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (registry / finished.stdout.strip()).touch()
    assert threads.others_training() == 0, "a finished process never counts"


def test_each_process_takes_its_share_of_the_cores(registry, other_process, monkeypatch):
    monkeypatch.setattr(threads, "CORES", 4)
    assert threads.start() == 4 and torch.get_num_threads() == 4
    (registry / str(other_process)).touch()
    assert threads.share() == 2 and torch.get_num_threads() == 2
    monkeypatch.setattr(threads, "CORES", 1)
    assert threads.share() == 1, "at least one thread"


def test_omp_num_threads_set_by_hand_wins(registry, other_process, monkeypatch):
    monkeypatch.setattr(threads, "CORES", 4)
    (registry / str(other_process)).touch()
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert threads.start() == 3 and torch.get_num_threads() == 3
    assert threads.share() == 3 and not (registry / str(os.getpid())).exists()


def test_a_process_that_left_is_not_counted_again(registry):
    threads.start()
    assert (registry / str(os.getpid())).exists()
    threads.leave()
    threads.share()
    assert not (registry / str(os.getpid())).exists()


def test_the_runner_starts_as_many_notebooks_as_fit_the_cores(monkeypatch):
    """`python -m grlib run` defaults to 2 jobs only where two processes fit without more threads than cores."""
    monkeypatch.setattr(threads, "CORES", 4)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert threads.processes_that_fit() == 4
    for fixed, fit in (("1", 4), ("2", 2), ("3", 1), ("4", 1), ("8", 1)):
        monkeypatch.setenv("OMP_NUM_THREADS", fixed)
        assert threads.processes_that_fit() == fit, fixed
    monkeypatch.setattr(threads, "CORES", 1)
    monkeypatch.delenv("OMP_NUM_THREADS")
    assert threads.processes_that_fit() == 1
