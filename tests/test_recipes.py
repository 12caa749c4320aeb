"""The method registry: every method builds, bad overrides are errors, and every hyperparameter is in the cache key."""
from __future__ import annotations

import copy
from dataclasses import fields

import pytest
import torch

from grlib.models import diffusion, gan, nets
from grlib.models.generators import Generator
from grlib.models.unet import UNet
from grlib.continual import recipes, tuned
from grlib.continual.memory import Buffer, ClassBalancedBuffer
from grlib.continual.strategies import Strategy
from helpers import synthetic_stream


def mnist_shaped_stream():
    """The synthetic stream of test_continual, padded to 1×28×28 so that the generators accept it."""
    stream = synthetic_stream()
    for task in stream:
        task.train_x = torch.nn.functional.pad(task.train_x, (0, 24, 0, 24))
        task.test_x = torch.nn.functional.pad(task.test_x, (0, 24, 0, 24))
    return stream


def changed(value, strategy: Strategy):
    """Another valid value of a hyperparameter, of the same kind."""
    alternatives = {"equal": "1/t", "1/t": "equal", "mode": "mean", "mean": "mode", "jtr": "ra", "dpm++2m": "ddim"}
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value + 1
    if isinstance(value, float):
        return value * 0.5 if value else 0.5
    if isinstance(value, str):
        return alternatives[value]
    if isinstance(value, nets.RotationSolver):
        return nets.make_rotation_solver("cnn", (1, 28, 28), 4, seed=1)
    if isinstance(value, torch.nn.Module):
        return nets.make_solver("mlp", (1, 28, 28), 4, seed=1)
    if isinstance(value, Buffer):
        return ClassBalancedBuffer(value.capacity + 1, 4)
    if isinstance(value, gan.WGANGP):
        return gan.WGANGP(width=value.settings["width"], seed=1, n_classes=value.n_classes)
    if isinstance(value, diffusion.Diffusion):
        return diffusion.Diffusion(UNet(ch=value.settings["model"]["settings"]["ch"], n_classes=4, seed=1), prediction="x0")
    raise AssertionError(f"no alternative for {value!r}")


@pytest.mark.parametrize("method", list(recipes.METHODS))
def test_changing_any_hyperparameter_changes_the_cache_key(method):
    stream = mnist_shaped_stream()
    strategy = recipes.build(method, "smoke", stream, seed=0)
    assert isinstance(strategy, recipes.METHODS[method].strategy)
    assert strategy.settings() == recipes.build(method, "smoke", stream, seed=0).settings()  # stable
    values = {f.name: getattr(strategy, f.name) for f in fields(strategy)}
    for name, value in values.items():
        if method == "mergan" and name == "variant":  # replay alignment also needs a generator that aligns
            variant = recipes.build(method, "smoke", stream, seed=0, variant="ra")
        elif method == "ddgr" and name == "eta":  # DDIM's noise, so on DDIM
            ddim = type(strategy)(**{**values, "sampler": "ddim"})
            assert type(strategy)(**{**values, "sampler": "ddim", "eta": 0.5}).settings() != ddim.settings()
            continue
        else:
            variant = type(strategy)(**{**values, name: changed(value, strategy)})
        assert variant.settings() != strategy.settings(), f"{method}: {name} is not in the cache key"


def test_the_key_is_taken_before_training_changes_the_weights():
    stream = mnist_shaped_stream()
    strategy = recipes.build("finetune", "smoke", stream)
    before = dict(strategy.settings())
    strategy.learn(stream, 0, progress=False)
    assert strategy.settings() == before


def test_overrides_reach_the_strategy_and_unknown_ones_are_listed():
    stream = mnist_shaped_stream()
    ewc = recipes.build("ewc", "smoke", stream, strength=3.0, iters=7)
    assert (ewc.strength, ewc.iters) == (3.0, 7)
    er = recipes.build("er", "smoke", stream, buffer_size=8, reservoir=True)
    assert type(er.buffer).__name__ == "ReservoirBuffer" and er.buffer.capacity == 8
    with pytest.raises(ValueError, match="ewc has no setting 'strenght'; it takes .*strength"):
        recipes.build("ewc", "smoke", stream, strenght=3.0)
    with pytest.raises(ValueError, match="unknown method 'ewk'; choose one of finetune, joint"):
        recipes.build("ewk", "smoke", stream)


def test_recipes_follow_the_stream_budget_and_scenario():
    split = mnist_shaped_stream()
    permuted = mnist_shaped_stream()
    permuted.name, permuted.scenario = "permuted-synthetic", "domain"
    P = recipes.get_profile("quick")
    a, b = recipes.build("ewc", P, split), recipes.build("ewc", P, permuted)
    assert (a.iters, a.lr, a.strength) == (P.iters, P.lr, tuned.TUNED["ewc"]["class"]["strength"])
    assert (b.iters, b.lr, b.strength) == (P.perm_iters, P.perm_lr, tuned.TUNED["ewc"]["domain"]["strength"])
    assert recipes.build("imm", P, split).merge == tuned.TUNED["imm"]["class"]["merge"]


@pytest.mark.parametrize("method", list(recipes.METHODS))
def test_a_strategy_loaded_from_another_changes_nothing_of_it(method):
    """A copy made with load_state_dict learns on without touching the original's records (DGR's pools, SI's
    importances, IMM's sums, PASS's prototypes): it holds its own copy of the state."""
    stream = mnist_shaped_stream()
    original = recipes.build(method, "smoke", stream, seed=0, iters=2)
    original.learn(stream, 0, progress=False)
    before = copy.deepcopy(original.state_dict())
    follower = recipes.build(method, "smoke", stream, seed=0, iters=2)
    follower.load_state_dict(original.state_dict())
    follower.learn(stream, 1, progress=False)
    torch.testing.assert_close(original.state_dict(), before, rtol=0, atol=0)  # nested dicts and lists of tensors


def test_both_generators_implement_the_protocol():
    assert isinstance(gan.WGANGP(width=8), Generator)
    assert isinstance(diffusion.Diffusion(UNet(ch=8)), Generator)


def test_constructors_leave_the_global_rng_alone():
    torch.manual_seed(11)
    expected = torch.rand(4)
    torch.manual_seed(11)
    nets.make_solver("mlp", (1, 28, 28), 10, seed=3)
    UNet(ch=8, seed=3)
    stream = mnist_shaped_stream()
    recipes.build("ddgr", "smoke", stream)
    recipes.build("finetune", "smoke", stream, iters=3).learn(stream, 0, progress=False)
    assert torch.equal(torch.rand(4), expected)
