"""DDPM maths: schedules, the forward process, both parameterisations, DDIM determinism, samplers and guidance."""
import pytest
import torch
from torch import nn

from grlib.core.guards import TrainingDivergedError
from grlib.models import diffusion, ema, guidance, samplers
from grlib.models.unet import UNet


def test_schedules():
    betas = diffusion.linear_betas(1000)
    assert betas[0].item() == pytest.approx(1e-4) and betas[-1].item() == pytest.approx(0.02)
    alpha_bar = torch.cumprod(1 - diffusion.cosine_betas(1000), 0)
    assert (alpha_bar[1:] < alpha_bar[:-1]).all() and alpha_bar[0] > 0.999 and alpha_bar[-1] < 1e-4


def test_q_sample_is_the_closed_form_forward_process():
    d = diffusion.Diffusion(UNet(ch=8), T=100)
    x0, eps = torch.rand(4, 1, 28, 28) * 2 - 1, torch.randn(4, 1, 28, 28)
    t = torch.tensor([0, 10, 50, 99])
    ab = torch.cumprod(1 - diffusion.linear_betas(100), 0).float()[t].view(-1, 1, 1, 1)
    assert torch.allclose(d.q_sample(x0, t, eps), ab.sqrt() * x0 + (1 - ab).sqrt() * eps, atol=1e-6)
    many = d.q_sample(torch.zeros(20000, 1, 1, 1), torch.full((20000,), 99), torch.randn(20000, 1, 1, 1))
    assert many.std().item() == pytest.approx((1 - ab[-1]).sqrt().item(), rel=0.03)


class Constant(nn.Module):
    """A 'network' that always outputs the same tensor (an oracle denoiser for one image)."""
    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.value = value
        self.image_shape, self.ch, self.class_emb, self.seed, self.patch = tuple(value.shape), 8, None, 0, 1
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t, y=None):
        return self.value.expand(len(x), *self.value.shape) + 0 * self.dummy


def loss_and_its_draws(d: diffusion.Diffusion, x0: torch.Tensor):
    """d.loss(x0) and, from the same seed, the step t, noise ε, x_t and network output it drew."""
    torch.manual_seed(0)
    loss = d.loss(x0)
    torch.manual_seed(0)
    t = torch.randint(0, d.T, (len(x0),))
    eps = torch.randn_like(x0)
    x_t = d.q_sample(x0, t, eps)
    return loss, t, eps, x_t, d.model(x_t, t)


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_loss_targets_the_chosen_parameterisation(prediction):
    d = diffusion.Diffusion(UNet(ch=8), T=50, prediction=prediction)
    x0 = torch.rand(3, 1, 28, 28) * 2 - 1
    loss, _, eps, _, out = loss_and_its_draws(d, x0)
    assert torch.allclose(loss, ((out - (eps if prediction == "eps" else x0)) ** 2).mean())


@pytest.mark.parametrize("prediction", ["eps", "x0"])
def test_min_snr_weights_each_image_by_min_snr_gamma_as_an_error_in_x0(prediction):
    d = diffusion.Diffusion(UNet(ch=8), T=50, prediction=prediction, min_snr_gamma=5.0)
    x0 = torch.rand(16, 1, 28, 28) * 2 - 1
    loss, t, _, x_t, out = loss_and_its_draws(d, x0)
    x0_hat = out if prediction == "x0" else d.x0_from_eps(x_t, t, out)  # either way, judged as an x₀ error
    snr = d.alpha_bar[t] / (1 - d.alpha_bar[t])
    assert snr.min() < 5 < snr.max()  # images on both sides of γ
    assert torch.allclose(loss, (snr.clamp(max=5) * ((x0_hat - x0) ** 2).mean((1, 2, 3))).mean(), rtol=1e-4)
    assert d.settings["min_snr_gamma"] == 5.0  # part of the cache key; None for the simple loss
    assert diffusion.Diffusion(UNet(ch=8)).settings["min_snr_gamma"] is None
    for bad in (0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="min_snr_gamma must be a positive number"):
            diffusion.Diffusion(UNet(ch=8), min_snr_gamma=bad)


def test_predict_converts_between_eps_and_x0():
    target = torch.rand(1, 28, 28) * 1.6 - 0.8
    d = diffusion.Diffusion(Constant(target), T=100, prediction="x0")
    x_t, t = torch.randn(2, 1, 28, 28), torch.tensor([5, 60])
    x0, eps = d.predict(x_t, t)
    ab = d.alpha_bar[t].view(-1, 1, 1, 1)
    assert torch.allclose(x0, target.expand_as(x0)) and torch.allclose(ab.sqrt() * x0 + (1 - ab).sqrt() * eps, x_t, atol=1e-5)


def test_samplers_recover_the_one_image_an_oracle_denoiser_knows():
    target = torch.rand(1, 28, 28) * 1.6 - 0.8  # in [-0.8, 0.8], away from the clipping
    d = diffusion.Diffusion(Constant(target), T=200, prediction="x0")
    expected = ((target + 1) / 2).expand(3, 1, 28, 28)
    assert torch.allclose(d.sample(3, steps=10), expected, atol=1e-5)  # DDIM, η = 0
    assert torch.allclose(d.sample(5, steps=10, batch=2), expected[:1].expand(5, -1, -1, -1), atol=1e-5)  # in batches
    assert torch.allclose(d.sample(3, steps=10, eta=1.0), expected, atol=1e-4)
    assert torch.allclose(d.sample(3, steps=10, sampler="dpm++2m"), expected, atol=1e-5)
    assert torch.allclose(d.sample(3), expected, atol=1e-4)  # ancestral, all 200 steps


class GaussianOracle(nn.Module):
    """The exact x₀-prediction for data x₀ ~ N(0, s²I): E[x₀ | x_t] = √ᾱ_t s² / (ᾱ_t s² + 1 − ᾱ_t) · x_t."""
    def __init__(self, std: float):
        super().__init__()
        self.std, self.alpha_bar = std, None
        self.image_shape, self.ch, self.class_emb, self.seed, self.patch = (1, 28, 28), 8, None, 0, 1
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x, t, y=None):
        ab = self.alpha_bar[t].view(-1, 1, 1, 1)
        return ab.sqrt() * self.std ** 2 / (ab * self.std ** 2 + 1 - ab) * x + 0 * self.dummy


def test_dpm_solver_is_second_order_and_its_first_order_step_is_ddim():
    oracle = GaussianOracle(0.3)
    d = diffusion.Diffusion(oracle, T=1000, prediction="x0")
    oracle.alpha_bar = d.alpha_bar
    torch.manual_seed(0)
    x_T = torch.randn(64, 1, 28, 28)
    # the probability-flow ODE keeps x_t / std(x_t) fixed: at step 0, x = x_T · std₀ / std_T
    std = lambda i: (d.alpha_bar[i] * 0.09 + 1 - d.alpha_bar[i]).sqrt()
    exact = x_T * std(0) / std(999)
    lam = [samplers.log_snr(d, i).item() for i in range(1000)]
    times = [min(range(1000), key=lambda i: abs(lam[i] - target)) for target in torch.linspace(lam[-1], lam[0], 10)]
    error = {}
    for order, sampler in ((1, samplers.DDIM()), (2, samplers.DPMSolver2M())):  # ten steps evenly spaced in λ,
        x = x_T  # where the extrapolation is well posed; to the grid's last step, t = 0, not on to the clean image
        sampler.set_timesteps(d.T, timesteps=times)
        for i in times[:-1]:
            t = torch.full((64,), i)
            x0 = oracle(x, t)
            x = sampler.step(d, x, i, x0, d.eps_from_x0(x, t, x0))
        error[order] = (x - exact).abs().mean().item()
    assert error[2] < error[1] / 5, error
    x, x0 = torch.randn(2, 1, 28, 28), torch.rand(2, 1, 28, 28) * 2 - 1
    eps = d.eps_from_x0(x, torch.full((2,), 500), x0)
    ddim, dpm = samplers.DDIM(), samplers.DPMSolver2M()
    for sampler in (ddim, dpm):
        sampler.set_timesteps(d.T, timesteps=[500, 400, 300])
    # the first step, with no step before it, is DDIM's (η = 0)
    assert torch.allclose(dpm.step(d, x, 500, x0, eps), ddim.step(d, x, 500, x0, eps), atol=1e-5)
    assert dpm.before[0] == 500 and torch.equal(dpm.before[1], x0)  # kept for the next step's extrapolation
    with pytest.raises(ValueError, match="out of turn"):
        dpm.step(d, x, 500, x0, eps)
    with pytest.raises(ValueError, match="deterministic"):
        d.sample(2, steps=5, eta=0.5, sampler="dpm++2m")
    with pytest.raises(ValueError, match="unknown sampler 'euler'; choose one of ancestral, ddim, dpm\\+\\+2m"):
        d.sample(2, steps=5, sampler="euler")
    with pytest.raises(ValueError, match="steps=None for ancestral sampling"):
        d.sample(2, steps=5, sampler="ancestral")


def test_ddim_is_deterministic_given_the_seed():
    d = diffusion.Diffusion(UNet(ch=8), T=100)
    torch.manual_seed(3)
    a = d.sample(2, steps=5)
    torch.manual_seed(3)
    b = d.sample(2, steps=5)
    torch.manual_seed(4)
    c = d.sample(2, steps=5)
    assert torch.equal(a, b) and not torch.equal(a, c) and a.shape == (2, 1, 28, 28)
    with pytest.raises(ValueError, match="0 ≤ eta ≤ 1"):
        d.sample(2, steps=5, eta=1.5)


class Brightness(nn.Module):
    """A classifier of clean images in [0, 1]: class 1 is bright, class 0 is dark."""
    def forward(self, x):
        m = 20 * (x.flatten(1).mean(1) - 0.5)
        return torch.stack([-m, m], 1)


class NoisyBrightness(nn.Module):
    def forward(self, x, t):
        return Brightness()((x + 1) / 2)


@pytest.mark.parametrize("guide, prediction", [(guidance.SolverGuide(Brightness(), 50.0), "x0"),
                                               (guidance.NoisyClassifierGuide(NoisyBrightness(), 50.0), "eps")],
                         ids=["solver-on-x0", "noisy-classifier-on-xt"])
def test_guidance_pulls_samples_towards_the_requested_class(guide, prediction):
    d = diffusion.Diffusion(Constant(torch.zeros(1, 28, 28)), T=100, prediction=prediction)  # knows no digits
    brightness = {}
    for c in (0, 1):
        torch.manual_seed(0)  # the same starting noise for both requests
        brightness[c] = d.sample(4, torch.full((4,), c), steps=10, guide=guide).flatten(1).mean(1)
    assert (brightness[1] > brightness[0] + 0.05).all()  # asked for "bright", it draws brighter


def test_unet_shapes_and_conditioning():
    for shape in ((1, 28, 28), (3, 32, 32)):
        net = UNet(shape, ch=8, n_classes=10)
        x = torch.randn(2, *shape)
        out = net(x, torch.tensor([1, 500]), torch.tensor([3, 7]))
        assert out.shape == x.shape
        assert not torch.allclose(out, net(x, torch.tensor([1, 500]), torch.tensor([4, 7])))
    with pytest.raises(ValueError, match="28×28 or 32×32"):
        UNet((1, 64, 64))
    for ch in (1, 2, 4, 8, 24):
        UNet(ch=ch)
    for ch in (0, 3, 6, 12):
        with pytest.raises(ValueError, match="1, 2, 4 or a multiple of 8"):
            UNet(ch=ch)


def test_a_patched_unet_runs_its_levels_at_half_the_size_and_keeps_each_pixel_its_own_output():
    for shape in ((1, 28, 28), (3, 32, 32)):
        net = UNet(shape, ch=8, n_classes=10, patch=2)
        sizes = []
        net.down1.register_forward_hook(lambda module, inputs, output: sizes.append(output.shape[-1]))
        x = torch.randn(2, *shape)
        out = net(x, torch.tensor([1, 500]), torch.tensor([3, 7]))
        assert out.shape == x.shape and sizes == [shape[-1] // 2]
        # the 2×2 blocks are unfolded back in place: the last layer's channels 4k..4k+3 are image channel k's
        # top-left, top-right, bottom-left and bottom-right pixels; shift all but the top-left ones
        with torch.no_grad():
            net.out[-1].bias.view(shape[0], 4)[:, 1:].add_(1.0)
        moved = net(x, torch.tensor([1, 500]), torch.tensor([3, 7])) - out
        assert torch.allclose(moved[:, :, 0::2, 0::2], torch.zeros(1), atol=1e-6)
        assert torch.allclose(moved[:, :, 1::2, 1::2], torch.ones(1))
    assert diffusion.Diffusion(UNet(ch=8, patch=2)).settings["model"]["settings"]["patch"] == 2  # part of the cache key
    assert "patch" not in diffusion.Diffusion(UNet(ch=8)).settings
    with pytest.raises(ValueError, match="patch is 1"):
        UNet(patch=4)


def test_training_lowers_the_loss_and_nan_is_an_error():
    torch.manual_seed(0)
    d = diffusion.Diffusion(UNet(ch=8), T=100, prediction="x0", lr=3e-3)
    images = torch.zeros(8, 1, 28, 28)
    images[:, :, 8:20, 8:20] = 1.0
    unlabelled = torch.zeros(8, dtype=torch.long)
    history = d.train(lambda n: (images[:n], unlabelled[:n]), iters=60, batch_size=8, progress=False)["loss"]
    assert sum(history[-10:]) / 10 < 0.5 * sum(history[:10]) / 10
    with pytest.raises(TrainingDivergedError, match="became nan at step 0"):
        d.train(lambda n: (torch.full((n, 1, 28, 28), float("nan")), unlabelled[:n]), iters=2, batch_size=2,
                progress=False)
    with pytest.raises(ValueError, match="schedule"):
        diffusion.Diffusion(UNet(ch=8), schedule="quadratic")


def test_ema_weights_sample_and_the_trained_weights_come_back():
    torch.manual_seed(0)
    d = diffusion.Diffusion(UNet(ch=8), T=50, prediction="x0", lr=1e-2, ema_decay=0.9)
    before = {k: v.clone() for k, v in d.model.state_dict().items()}
    d.train(lambda n: (torch.rand(n, 1, 28, 28), torch.zeros(n, dtype=torch.long)), iters=20, batch_size=4,
            progress=False)
    trained = {k: v.clone() for k, v in d.model.state_dict().items()}
    averaged = d.sampling_network.state_dict()
    key = "inp.weight"
    # the average lies between the start and the trained weights, closer to the latter, and is not the latter
    assert 0 < (averaged[key] - trained[key]).norm() < (before[key] - trained[key]).norm()
    assert d.sampling_network is not d.model
    d.sample(2, steps=3)
    assert all(torch.equal(v, trained[k]) for k, v in d.model.state_dict().items())
    copy = diffusion.Diffusion(UNet(ch=8), T=50, prediction="x0", ema_decay=0.9)
    copy.load_state_dict(d.state_dict())
    torch.manual_seed(1)
    a = d.sample(2, steps=3)
    torch.manual_seed(1)
    assert torch.equal(a, copy.sample(2, steps=3)) and int(copy.ema.n_averaged) == 20


def test_the_ema_decay_warms_up_then_holds():
    averaged, current = [torch.zeros(3)], [torch.ones(3)]
    update = ema.ema_with_warmup(0.9)
    update(averaged, current, torch.tensor(1))  # d = min(0.9, 2/11): mostly the new weights
    assert torch.allclose(averaged[0], torch.full((3,), 1 - 2 / 11))
    averaged = [torch.zeros(3)]
    update(averaged, current, torch.tensor(1000))  # d = 0.9
    assert torch.allclose(averaged[0], torch.full((3,), 0.1))


def test_the_unet_initialisation_depends_on_its_seed_alone():
    torch.manual_seed(123)
    a = UNet(ch=8, seed=1)
    torch.randn(1000)  # whatever ran before must not matter
    b, c = UNet(ch=8, seed=1), UNet(ch=8, seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a.inp.weight, c.inp.weight)
    assert diffusion.Diffusion(c).settings["model"]["settings"]["seed"] == 2
