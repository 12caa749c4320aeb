"""Nothing silently wrong: diverging training stops before anything is cached, non-finite numbers are never written,
and checkpoints stay whole when two processes save and load the same one at once."""
from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch

from grlib import continual
from grlib.core import checkpoints, config
from grlib.core.guards import TrainingDivergedError
from grlib.continual.data import TaskStream
from grlib.continual.strategies import Finetune
from grlib.course import notebooks, results, runner
from helpers import small_solver, synthetic_stream, untrainable


def test_an_infinite_learning_rate_is_refused_before_anything_runs():
    with pytest.raises(ValueError, match="lr must be a finite number"):
        continual.run(Finetune(small_solver(), lr=float("inf")), synthetic_stream(), progress=False)
    assert not list((config.build_dir() / "checkpoints").glob("*.pt"))


def test_a_diverging_run_stops_with_the_strategy_task_and_step_and_caches_nothing():
    solver, calls = small_solver(), []

    def blow_up_in_task_2(module, inputs, output):  # the solver's output turns NaN on its 70th call (task 2)
        calls.append(1)
        return output * float("nan") if len(calls) >= 70 else output

    solver.register_forward_hook(blow_up_in_task_2)
    with pytest.raises(TrainingDivergedError, match=r"finetune task 2/2: the loss became nan at step \d+; lower"):
        continual.run(Finetune(solver, iters=50, batch_size=8), synthetic_stream(), progress=False)
    saved = [p.name for p in (config.build_dir() / "checkpoints").glob("*.pt")]
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
from grlib.core import checkpoints
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
    from grlib.course import params

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


# A cached model is checked before it is trusted, and a diverged one is never cached.

def _rewrite(path, change) -> None:
    """Change the state saved in the checkpoint `path`, keeping its settings key (as if it had been saved so)."""
    saved = torch.load(path, weights_only=True)
    change(saved["state"])
    torch.save(saved, path)


@pytest.mark.parametrize("damage", ["nan weights", "old structure", "no strategy"])
def test_a_cached_checkpoint_that_cannot_be_trusted_is_set_aside_and_retrained(damage):
    stream = synthetic_stream()
    clean = continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, progress=False)
    task1, = (config.build_dir() / "checkpoints").glob("finetune-*-task1-*.pt")
    if damage == "nan weights":
        _rewrite(task1, lambda state: next(iter(state["strategy"]["solver"].values())).fill_(float("nan")))
    elif damage == "old structure":  # a state_dict changed without a CACHE_VERSION bump
        _rewrite(task1, lambda state: state["strategy"].update(solver={"renamed.weight": torch.zeros(1)}))
    else:
        _rewrite(task1, lambda state: state.pop("strategy"))
    with pytest.warns(UserWarning, match="could not be used: (it holds NaN|its contents do not fit the code)"):
        again = continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, progress=False)
    assert again.R == clean.R and again.A_T == clean.A_T
    assert task1.with_suffix(".corrupt").exists()


class NaNGradient(Finetune):
    """A penalty whose value is finite (0) but whose gradient is NaN: the step it takes makes every weight NaN."""

    def loss(self, x, y, stream, t):
        weight = next(self.solver.parameters())
        return super().loss(x, y, stream, t) + 0.0 * (weight - weight.detach()).abs().sqrt().sum()


def test_what_the_last_step_did_is_checked_before_the_task_ends():
    strategy = NaNGradient(small_solver(), iters=1, batch_size=8)
    with pytest.raises(TrainingDivergedError, match=r"task 1/2: the loss became nan at step 1"):
        strategy.learn(synthetic_stream(), 0, progress=False)


def test_what_the_last_diffusion_step_did_is_checked():
    from grlib.models.diffusion import Diffusion
    from grlib.models.unet import UNet

    d, calls = Diffusion(UNet(ch=8), T=10), []

    def nan_after_training(module, inputs, output):  # the network turns NaN once its 2 training steps are done
        calls.append(1)
        return output * float("nan") if len(calls) > 2 else output

    d.model.register_forward_hook(nan_after_training)
    with pytest.raises(TrainingDivergedError, match="became nan at step 2"):
        d.train(lambda n: (torch.rand(n, 1, 28, 28), torch.zeros(n, dtype=torch.long)), iters=2, batch_size=2,
                progress=False)


def test_a_learning_rate_above_one_is_refused():
    from grlib.models.diffusion import Diffusion
    from grlib.models.gan import WGANGP
    from grlib.models.unet import UNet

    for make in (lambda: Finetune(small_solver(), lr=1e20), lambda: Diffusion(UNet(ch=8), lr=10.0),
                 lambda: WGANGP(lr=2.0), lambda: WGANGP(critic_lr=1e37)):
        with pytest.raises(ValueError, match=r"learning rate must be a number in \(0, 1\]"):
            make()


def test_a_subclass_that_keeps_the_name_is_not_served_the_parent_s_models():
    class Variant(Finetune):  # a learner's variant: the same name, another loss
        def loss(self, x, y, stream, t):
            return 2 * super().loss(x, y, stream, t)

    stream = synthetic_stream()
    continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, progress=False)
    variant = continual.run(Variant(small_solver(), iters=20, batch_size=8), stream, progress=False)
    alone = continual.run(Variant(small_solver(), iters=20, batch_size=8), stream, cache=False, progress=False)
    assert variant.losses == alone.losses  # trained, not loaded
    assert len(list((config.build_dir() / "checkpoints").glob("finetune-*.pt"))) == 4


# Results carry what made them; a file that cannot be read is named; writes are whole or not at all.

def test_results_record_the_profile_and_parameters_and_a_reader_can_demand_its_own(monkeypatch):
    from grlib.course import params

    monkeypatch.setattr(params, "last", None)
    params.check({"profile": "smoke", "seed": 1, "buffer_size": 100}, seed=params.integer(min=0),
                 buffer_size=params.integer(min=10))
    results.save_results("02_x", {"A_T": 50.0})
    saved = results.load_results("02_x")
    assert saved["profile"] == "smoke" and saved["parameters"] == {"seed": 1, "buffer_size": 100}
    assert results.load_results("02_x", expect={"profile": "smoke", "seed": 1}) == saved
    with pytest.raises(results.ResultsMismatch, match=r"02_x's results were made with seed=1, not seed=0; rerun it: "
                                                      r"python -m grlib run --only 02 --profile smoke -p seed 0"):
        results.load_results("02_x", expect={"profile": "smoke", "seed": 0})
    assert "made with profile='smoke', not profile='quick'" in results.mismatch("02_x", {"profile": "quick"})
    assert "has no results yet; run it: python -m grlib run --only 03" in results.mismatch("03_x", {"seed": 0})
    assert results.mismatch("02_x", {"seed": 1}) is None


def test_results_written_before_parameters_were_recorded_are_not_taken_for_any():
    (config.build_dir() / "results").mkdir(parents=True)
    (config.build_dir() / "results" / "02_x.json").write_text('{"notebook": "02_x", "headline": {}, "details": '
                                                                 '{"profile": "smoke"}}')
    assert "made with profile unknown, seed unknown" in results.mismatch("02_x", {"profile": "smoke", "seed": 0})


def test_a_results_file_that_cannot_be_read_is_named_with_what_to_rerun():
    folder = config.build_dir() / "results"
    folder.mkdir(parents=True)
    (folder / "02_experience_replay.json").write_text('{"notebook": "02_experience_replay", "head')
    with pytest.raises(ValueError, match=r"the results file .*02_experience_replay.json cannot be read .*rerun "
                                         r"notebook 02_experience_replay .*--only 02"):
        results.load_results("02_experience_replay")


@pytest.fixture
def full_disk(monkeypatch):
    """Every file written through `grlib.core.files.atomic_file` lands on /dev/full: No space left on device."""
    if not os.path.exists("/dev/full"):
        pytest.skip("needs /dev/full")

    def mkstemp(dir, prefix, suffix):
        return os.open("/dev/full", os.O_WRONLY), os.path.join(dir, f"{prefix}x{suffix}")

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def test_results_on_a_full_disk_are_an_error_naming_the_file_and_the_old_ones_stay_whole(full_disk, monkeypatch):
    folder = config.build_dir() / "results"
    folder.mkdir(parents=True)
    (folder / "01_x.json").write_text('{"old": 1}')
    with pytest.raises(OSError, match=r"No space left on device: '.*01_x.json'"):
        results.save_results("01_x", {"A_T": 50.0})
    assert json.loads((folder / "01_x.json").read_text()) == {"old": 1} and os.listdir(folder) == ["01_x.json"]


def test_a_checkpoint_on_a_full_disk_is_used_but_not_kept(full_disk, tmp_path):
    with pytest.warns(UserWarning, match="could not keep the checkpoint model.pt .*No space left on device"):
        assert checkpoints.save_checkpoint(tmp_path / "model.pt", {}, {"w": torch.ones(2)}) is None
    assert not (tmp_path / "model.pt").exists()


def test_a_full_disk_is_one_line_naming_the_folder(monkeypatch, capsys):
    import errno

    from grlib.course import cli

    def full(**kw):
        raise OSError(errno.ENOSPC, "No space left on device", "/mnt/small/build/results/00_x.json")

    monkeypatch.setattr(cli, "run_course", full)
    monkeypatch.setattr(cli, "stop_on_signals", lambda: None, raising=False)  # this test process keeps its own
    assert cli.main(["run", "--only", "00", "--profile", "smoke"]) == 1
    err = capsys.readouterr().err
    assert err == ("error: cannot write into /mnt/small/build/results: No space left on device; free some space "
                   "there, or give another --out (or GRLIB_BUILD)\n")


def test_the_report_s_mathjax_copy_on_a_full_disk_leaves_no_half_copy(tmp_path, monkeypatch):
    import errno
    import shutil

    from grlib.course import report

    copied = []

    def copy2(source, target):
        if copied:
            raise OSError(errno.ENOSPC, "No space left on device", str(target))
        copied.append(shutil.copyfile(source, target))

    def copytree(source, target, **kw):  # as shutil's, whose copy function is bound before the patch above
        Path(target).mkdir(parents=True)
        for file in sorted(Path(source).rglob("*.js")):
            copy2(file, Path(target) / file.name)

    monkeypatch.setattr(shutil, "copy2", copy2)
    monkeypatch.setattr(shutil, "copytree", copytree)
    with pytest.raises(OSError, match=f"No space left on device: '{tmp_path / 'mathjax'}'"):  # the copy, not the source
        report.copy_mathjax(tmp_path)
    assert os.listdir(tmp_path) == []  # no half copy that a later run would take for whole


# A class sharing one cache, and learners sharing one build folder.

@pytest.fixture
def shared_cache(tmp_path, monkeypatch) -> tuple[Path, TaskStream, continual.RunResult]:
    """A class's shared checkpoint folder ($GRLIB_CHECKPOINTS), filled by fine-tuning on the synthetic stream: the
    folder, the stream and that first run's results."""
    shared = tmp_path / "shared"
    monkeypatch.setenv("GRLIB_CHECKPOINTS", str(shared))
    stream = synthetic_stream()
    return shared, stream, continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, progress=False)


def test_a_read_only_shared_cache_is_loaded_from_and_new_models_go_to_the_build_folder(shared_cache, unwritable):
    shared, stream, first = shared_cache
    task2, = shared.glob("*-task2-*.pt")
    task2.unlink()  # the teacher's cache holds task 1 only
    unwritable(shared)
    own = config.build_dir() / "checkpoints"
    with pytest.warns(UserWarning, match=f"the checkpoint folder {shared} cannot be written: the models it holds "
                                         f"are loaded, new ones are kept in {own}"):
        second = continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, progress=False)
    assert second.R == first.R and [p.name for p in own.glob("*.pt")] == [task2.name]
    third = continual.run(untrainable(Finetune(small_solver(), iters=20, batch_size=8)), stream, progress=False)
    assert third.R == first.R  # both loaded: task 1 from the shared cache, task 2 from this user's own
    lines: list[str] = []
    runner.cache_notice(shared, own, lines.append)
    assert lines == [f"the checkpoint folder {shared} cannot be written: the models it holds are loaded, new ones "
                     f"are kept in {own}"]


@pytest.mark.parametrize("theirs", ["unreadable", "corrupt"])
def test_another_user_s_checkpoint_in_a_shared_cache_is_passed_over_and_never_claimed_moved(shared_cache, monkeypatch,
                                                                                           theirs):
    """A sticky shared folder (mode 1777): this user may add files but neither replace nor move another's; with the
    teacher's umask 077 their files cannot even be read."""
    shared, stream, first = shared_cache
    task1, = shared.glob("*-task1-*.pt")
    if theirs == "corrupt":
        task1.write_bytes(b"half a checkpoint")
    real_open, real_replace = open, os.replace

    def guarded_open(path, *args, **kw):
        if theirs == "unreadable" and Path(path) == task1:
            raise PermissionError(13, "Permission denied", str(path))
        return real_open(path, *args, **kw)

    def guarded_replace(source, target):
        if task1 in (Path(source), Path(target)):
            raise PermissionError(1, "Operation not permitted", str(source))
        return real_replace(source, target)

    monkeypatch.setattr(checkpoints, "open", guarded_open, raising=False)
    monkeypatch.setattr(os, "replace", guarded_replace)
    with pytest.warns(UserWarning) as said:
        second = continual.run(Finetune(small_solver(), iters=20, batch_size=8), stream, progress=False)
    text = " ".join(str(w.message) for w in said)
    assert "moved it" not in text and ("cannot be read by this user" in text or "could not move it aside" in text)
    assert second.R == first.R and not task1.with_suffix(".corrupt").exists()
    assert (config.build_dir() / "checkpoints" / task1.name).exists()  # kept as this user's own copy
    third = continual.run(untrainable(Finetune(small_solver(), iters=20, batch_size=8)), stream, progress=False)
    assert third.R == first.R


def test_a_build_folder_another_user_made_is_one_line_naming_it(tmp_path, unwritable):
    out = tmp_path / "build"
    (out / "notebooks").mkdir(parents=True)
    unwritable(out / "notebooks")
    with pytest.raises(ValueError, match=f"cannot write the build into {out / 'notebooks'}: Permission denied; "
                                         f"give a --out of your own"):
        notebooks.prepare_out(str(out))
