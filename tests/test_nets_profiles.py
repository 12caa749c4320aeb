import pytest
import torch

from grlib.models import nets
from grlib.continual import profiles


def test_mlp_is_784_400_400_10():
    mlp = nets.make_solver("mlp", (1, 28, 28), 10, device=torch.device("cpu"))
    assert mlp(torch.rand(3, 1, 28, 28)).shape == (3, 10)
    assert nets.count_parameters(mlp) == (784 * 400 + 400) + (400 * 400 + 400) + (400 * 10 + 10)


def test_cnn_handles_mnist_and_cifar_shapes():
    for shape, n in (((1, 28, 28), 10), ((3, 32, 32), 100)):
        cnn = nets.make_solver("cnn", shape, n, device=torch.device("cpu"))
        assert cnn(torch.rand(2, *shape)).shape == (2, n)


def test_solvers_are_seeded_and_unknown_names_listed():
    a = nets.make_solver("mlp", (1, 28, 28), 10, seed=3, device=torch.device("cpu"))
    b = nets.make_solver("mlp", (1, 28, 28), 10, seed=3, device=torch.device("cpu"))
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    with pytest.raises(ValueError, match="mlp, cnn"):
        nets.make_solver("resnet", (1, 28, 28), 10)


def test_device_rule_is_cpu_without_accelerators(monkeypatch):
    nets.pick_device.cache_clear()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert nets.pick_device() == torch.device("cpu")
    nets.pick_device.cache_clear()


def test_adam_is_fused_where_torch_has_the_kernel_and_plain_otherwise(monkeypatch):
    x, y = torch.rand(16, 1, 28, 28), torch.randint(0, 10, (16,))
    weights = {}
    for kernel in (True, False):
        nets.has_fused_adam.cache_clear()
        if not kernel:  # as a torch without the kernel for this device answers the first fused step
            def missing(*args, **kwargs):
                raise NotImplementedError("Could not run 'aten::_fused_adam_' with arguments from the 'CPU' backend")
            monkeypatch.setattr(torch, "_fused_adam_", missing)
        elif not nets.has_fused_adam("cpu"):
            pytest.skip("this torch has no fused Adam for CPUs")
        mlp = nets.make_solver("mlp", (1, 28, 28), 10, seed=0, device=torch.device("cpu"))
        optimizer = nets.adam(mlp.parameters(), lr=1e-3)
        assert bool(optimizer.defaults["fused"]) == kernel
        for _ in range(3):
            optimizer.zero_grad()
            torch.nn.functional.cross_entropy(mlp(x), y).backward()
            optimizer.step()
        weights[kernel] = [p.detach().clone() for p in mlp.parameters()]
    nets.has_fused_adam.cache_clear()
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(weights[True], weights[False]))  # the same update


def test_profile_resolution(monkeypatch):
    monkeypatch.delenv("GRLIB_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert profiles.get_profile().name == "quick"  # auto on a CPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert profiles.get_profile("auto").name == "full"
    monkeypatch.setenv("GRLIB_PROFILE", "smoke")
    assert profiles.get_profile().name == "smoke"
    assert profiles.get_profile("quick").name == "quick"  # an explicit name beats the environment
    with pytest.raises(ValueError, match="smoke, quick, full, auto"):
        profiles.get_profile("fast")


def test_profiles_grow_with_budget():
    smoke, quick, full = (profiles.PROFILES[n] for n in ("smoke", "quick", "full"))
    assert smoke.iters < quick.iters < full.iters
