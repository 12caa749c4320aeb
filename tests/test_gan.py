"""WGAN-GP: the gradient penalty's maths, shapes, a tiny training run, and divergence errors."""
import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grlib.models import gan


class Linear(nn.Module):
    """D(x) = w·x, whose gradient is w everywhere."""
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = nn.Parameter(w)

    def forward(self, x):
        return (x.flatten(1) * self.w).sum(1)


def test_gradient_penalty_of_a_linear_critic_is_norm_minus_one_squared():
    w = torch.full((1 * 4 * 4,), 0.5)  # ‖w‖ = 0.5 · 4 = 2
    real, fake = torch.rand(8, 1, 4, 4), torch.rand(8, 1, 4, 4)
    assert torch.allclose(gan.gradient_penalty(Linear(w), real, fake), torch.tensor((2.0 - 1) ** 2))
    unit = torch.zeros(16)
    unit[3] = 1.0
    assert gan.gradient_penalty(Linear(unit), real, fake).item() == pytest.approx(0.0, abs=1e-7)


def test_gradient_penalty_is_differentiable_in_the_critic():
    critic = Linear(torch.full((16,), 0.5))
    gan.gradient_penalty(critic, torch.rand(4, 1, 4, 4), torch.rand(4, 1, 4, 4)).backward()
    # d/dw (‖w‖ − 1)² = 2(‖w‖ − 1) w / ‖w‖ = 2 · 1 · 0.5 / 2 = 0.5 in every coordinate
    assert torch.allclose(critic.w.grad, torch.full((16,), 0.5))


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_shapes_and_range(shape):
    model = gan.WGANGP(shape, z_dim=8, width=8)
    images = model.sample(5)
    assert images.shape == (5, *shape) and images.min() >= 0 and images.max() <= 1
    assert model.critic(images).shape == (5,)


def test_unsupported_size_is_an_error():
    with pytest.raises(ValueError, match="28×28 or 32×32"):
        gan.Generator((1, 64, 64))


def half_white(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.zeros(n, 1, 28, 28)
    x[..., :14] = 1.0
    return x, torch.zeros(n, dtype=torch.long)


def test_training_moves_samples_towards_the_data():
    torch.manual_seed(0)
    model = gan.WGANGP((1, 28, 28), z_dim=8, width=8, lr=1e-3, critic_steps=2)
    before = model.sample(64)
    history = model.train(half_white, iters=80, batch_size=16, progress=False)
    after = model.sample(64)
    contrast = lambda x: float(x[..., :14].mean() - x[..., 14:].mean())  # noqa: E731
    assert abs(contrast(before)) < 0.1 and contrast(after) > 0.4
    assert len(history["wasserstein"]) == 80 and all(len(v) == 80 for v in history.values())


def test_nan_data_stops_training_with_a_clear_error():
    model = gan.WGANGP((1, 28, 28), z_dim=8, width=8)
    with pytest.raises(gan.TrainingDivergedError, match="critic.*loss became nan at step 0"):
        model.train(lambda n: (torch.full((n, 1, 28, 28), float("nan")), torch.zeros(n, dtype=torch.long)), iters=3,
                    batch_size=4, progress=False)


def test_the_lazy_penalty_falls_on_every_kth_critic_step_weighted_k_lambda(monkeypatch):
    monkeypatch.setattr(gan, "gradient_penalty", lambda critic, real, fake: torch.tensor(1.0))  # GP = 1
    model = gan.WGANGP(z_dim=8, width=8, critic_steps=1, gp_every=3, gp_weight=10.0)
    real = torch.rand(4, 1, 28, 28) * 2 - 1
    penalties = [sum(model.critic_step(real)) for _ in range(6)]  # L_D + (E[D(x)] − E[D(x̃)]) = k·λ·GP or 0
    assert penalties == pytest.approx([0, 0, 30, 0, 0, 30], abs=1e-4)


def test_with_shared_fakes_the_critic_steps_of_a_generator_step_score_one_batch(monkeypatch):
    model = gan.WGANGP(z_dim=8, width=8, critic_steps=3, share_fakes=True)
    scored = []
    critic_step = model.critic_step
    monkeypatch.setattr(model, "critic_step", lambda real, y, fake: scored.append(fake) or critic_step(real, y, fake))
    model.train(half_white, iters=2, batch_size=4, progress=False)
    assert len(scored) == 6 and all(f is scored[0] for f in scored[:3]) and all(f is scored[3] for f in scored[3:])
    assert not torch.equal(scored[0], scored[3])  # a fresh batch for each generator step
    with pytest.raises(ValueError, match="unconditional"):
        gan.WGANGP(z_dim=8, width=8, n_classes=2, share_fakes=True)


def test_an_unconditional_gan_refuses_to_draw_given_classes():
    with pytest.raises(ValueError, match="cannot draw given classes"):
        gan.WGANGP(z_dim=8, width=8).sample(2, torch.tensor([0, 1]))


def test_initial_weights_depend_on_the_seed_alone_and_leave_the_global_rng_alone():
    torch.manual_seed(5)
    expected_next = torch.rand(3)
    torch.manual_seed(5)
    a = gan.WGANGP(z_dim=8, width=8, seed=2)
    assert torch.equal(torch.rand(3), expected_next)  # the constructor did not move the global RNG
    b = gan.WGANGP(z_dim=8, width=8, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.generator.parameters(), b.generator.parameters()))


def test_state_round_trip():
    a, b = gan.WGANGP(z_dim=8, width=8, seed=0), gan.WGANGP(z_dim=8, width=8, seed=1)
    b.load_state_dict(a.state_dict())
    torch.manual_seed(3)
    x = a.sample(4)
    torch.manual_seed(3)
    assert torch.equal(x, b.sample(4))


def test_with_an_ema_samples_come_from_the_average_of_the_generators_weights():
    data = torch.rand(64, 1, 28, 28)
    model = gan.WGANGP(z_dim=8, width=8, critic_steps=1, seed=0, ema_decay=0.5)
    model.train(lambda n: (data[:n], None), iters=1, batch_size=8, progress=False)  # the first update copies θ_1
    first = copy.deepcopy(model.generator)
    model.train(lambda n: (data[:n], None), iters=1, batch_size=8, progress=False)
    # the second, after n = 1 update: d = min(0.5, (1 + 1)/(10 + 1)), θ_ema = d θ_1 + (1 − d) θ_2
    for a, p, q in zip(model.ema.module.parameters(), first.parameters(), model.generator.parameters()):
        assert torch.allclose(a, 2 / 11 * p + 9 / 11 * q, atol=1e-6)
    model.train(lambda n: (data[:n], None), iters=4, batch_size=8, progress=False)
    torch.manual_seed(0)
    z = torch.randn(4, 8)
    with torch.no_grad():
        expected = (model.ema.module.eval()(z) + 1) / 2
        live = (model.generator.eval()(z) + 1) / 2
    torch.manual_seed(0)  # sample() draws the same z
    assert torch.allclose(model.sample(4), expected) and not torch.allclose(expected, live, atol=1e-3)
    restored = gan.WGANGP(z_dim=8, width=8, seed=1, ema_decay=0.5)
    restored.load_state_dict(model.state_dict())
    torch.manual_seed(0)
    assert torch.allclose(restored.sample(4), expected) and int(restored.ema.n_averaged) == 6
    assert restored.settings["ema_decay"] == 0.5 and gan.WGANGP().settings["ema_decay"] == 0.0
    with pytest.raises(ValueError, match="ema_decay"):
        gan.WGANGP(ema_decay=1.0)


def class_images(c: int, n: int) -> torch.Tensor:
    """Class 0: the left half white; class 1: the right half."""
    x = torch.zeros(n, 1, 28, 28)
    x[..., :14] = 1.0 if c == 0 else 0.0
    x[..., 14:] = 1.0 if c == 1 else 0.0
    return x


@pytest.mark.parametrize("auxiliary", [0.0, 1.0], ids=["projection-critic", "ac-gan"])
def test_a_conditional_gan_draws_the_classes_asked_for(auxiliary):
    torch.manual_seed(0)
    model = gan.WGANGP((1, 28, 28), z_dim=8, width=8, lr=1e-3, critic_steps=2, n_classes=2, auxiliary=auxiliary)
    assert (model.critic.classifier is None) == (auxiliary == 0) and (model.critic.class_emb is None) == (auxiliary > 0)

    def both(n):
        y = torch.arange(n) % 2
        return torch.cat([class_images(0, n)[y == 0], class_images(1, n)[y == 1]]), torch.cat([y[y == 0], y[y == 1]])

    model.train(both, iters=150, batch_size=16, progress=False)
    left = lambda x: float(x[..., :14].mean() - x[..., 14:].mean())  # noqa: E731
    assert left(model.sample(32, torch.zeros(32, dtype=torch.long))) > 0.2 > -0.2 > left(model.sample(32, torch.ones(32, dtype=torch.long)))
    assert model.known == {0, 1}
    with pytest.raises(ValueError, match="pass y"):
        model.sample(4)


def test_replay_alignment_holds_the_old_classes_to_the_previous_generator():
    moved = {}
    for weight in (0.0, 10.0):
        torch.manual_seed(0)
        model = gan.WGANGP((1, 28, 28), z_dim=8, width=8, lr=1e-3, critic_steps=1, n_classes=2, alignment=weight)
        model.train(lambda n: (class_images(0, n), torch.zeros(n, dtype=torch.long)), iters=40, batch_size=8,
                    progress=False)
        z = torch.randn(16, 8)
        model.generator.eval()
        with torch.no_grad():
            before = model.generator(z, torch.zeros(16, dtype=torch.long))
        model.train(lambda n: (class_images(1, n), torch.ones(n, dtype=torch.long)), iters=40, batch_size=8,
                    progress=False)  # the second task: class 1 only
        model.generator.eval()
        with torch.no_grad():
            moved[weight] = float((model.generator(z, torch.zeros(16, dtype=torch.long)) - before).pow(2).mean())
    assert moved[10.0] < 0.5 * moved[0.0]
    with pytest.raises(ValueError, match="class-conditional"):
        gan.WGANGP(alignment=1.0)


def test_the_ac_gan_generator_loss_adds_the_classifier_cross_entropy():
    torch.manual_seed(0)
    model = gan.WGANGP((1, 28, 28), z_dim=8, width=8, n_classes=2, auxiliary=0.5)
    y = torch.tensor([0, 1] * 4)
    before = copy.deepcopy(model.generator.state_dict())
    torch.manual_seed(1)
    loss = model.generator_step(8, y)
    model.generator.load_state_dict(before)
    torch.manual_seed(1)
    score, logits = model.critic.scores(model.generator(torch.randn(8, 8), y))
    assert logits.shape == (8, 2)
    assert abs(loss - (-score.mean() + 0.5 * F.cross_entropy(logits, y)).item()) < 1e-5  # L_G + β CE(C(G(z, y)), y)
    with pytest.raises(ValueError, match="class-conditional"):
        gan.WGANGP(auxiliary=1.0)


def test_class_norms_start_as_plain_batch_norm_and_shift_only_their_own_class():
    plain = gan.WGANGP((1, 28, 28), z_dim=8, width=8, n_classes=3, seed=0)
    norms = gan.WGANGP((1, 28, 28), z_dim=8, width=8, n_classes=3, class_norm=True, seed=0)
    assert norms.settings["class_norm"] and not plain.settings["class_norm"]
    z, y = torch.randn(12, 8), torch.arange(12) % 3
    with torch.no_grad():
        assert torch.allclose(plain.generator(z, y), norms.generator(z, y), atol=1e-6)  # γ_y = 1, β_y = 0 at first
        layer = next(m for m in norms.generator.modules() if isinstance(m, gan.ClassBatchNorm2d))
        layer.shift[2] += 1.0  # β_2: class 2's shift only
        moved = (norms.generator(z, y) - plain.generator(z, y)).abs().flatten(1).amax(1)
    assert (moved[y == 2] > 1e-3).all() and (moved[y != 2] < 1e-6).all()
    with pytest.raises(ValueError, match="class-conditional"):
        gan.WGANGP(class_norm=True)
