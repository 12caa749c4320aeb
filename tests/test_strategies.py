"""ER, EWC and SI on the synthetic stream of test_continual, and the Fisher information against a plain loop."""
import pytest
import torch
import torch.nn.functional as F

from grlib import continual
from grlib.models import nets
from grlib.continual import strategies
from grlib.continual.memory import ClassBalancedBuffer, ReservoirBuffer
from helpers import Untrainable, small_solver, synthetic_stream

KW = dict(iters=150, batch_size=32, lr=1e-2)


def run(strategy, stream=None, cache=False):
    return continual.run(strategy, stream or synthetic_stream(), cache=cache, progress=False)


def test_er_remembers_what_finetuning_forgets():
    finetune = run(strategies.Finetune(small_solver(), **KW))
    for buffer in (ClassBalancedBuffer(20, n_classes=4), ReservoirBuffer(20)):
        er = run(strategies.ER(small_solver(), buffer, **KW))
        assert er.R[1][0] > 80 > finetune.R[1][0] + 50
        assert len(buffer) == 20


@pytest.mark.parametrize("weight, w", [("1/t", 1 / 3), ("equal", 1 / 2), (0.9, 0.9)])
def test_er_loss_weights_the_new_task_by_w(weight, w):
    stream = synthetic_stream()
    er = strategies.ER(small_solver(), ReservoirBuffer(8), new_task_weight=weight, **KW)
    er.buffer.add(stream[0].train_x, stream[0].train_y, torch.Generator().manual_seed(0))
    x, y = stream[1].train_x[:4].float() / 255, stream[1].train_y[:4]
    er.rng = torch.Generator().manual_seed(5)
    loss = er.loss(x, y, stream, t=2)  # the third task
    x_old, y_old = er.buffer.sample(er.batch_size, torch.Generator().manual_seed(5))
    logits = er.solver(torch.cat([x, x_old.float() / 255]))
    expected = F.cross_entropy(logits[:4], y) * w + F.cross_entropy(logits[4:], y_old) * (1 - w)
    assert torch.allclose(loss, expected)


@pytest.mark.parametrize("weight", ["more", 1.5, 0.0])
def test_er_refuses_a_weight_that_is_not_one(weight):
    with pytest.raises(ValueError, match="'equal', '1/t' or a number between 0 and 1"):
        strategies.ER(small_solver(), ReservoirBuffer(8), new_task_weight=weight)


class TwiceThroughOneLayer(torch.nn.Module):
    """A linear layer used twice in one forward pass: its per-image gradient is no single outer product."""

    def __init__(self):
        super().__init__()
        self.square, self.out = torch.nn.Linear(16, 16), torch.nn.Linear(16, 3)

    def forward(self, x):
        return self.out(torch.relu(self.square(torch.relu(self.square(x.flatten(1))))))


SOLVERS = {"mlp (closed form)": lambda: nets.MLP((1, 4, 4), hidden=(8,), n_classes=3),
           "conv (per-image gradients)": lambda: torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.ReLU(),
                                                                      torch.nn.Flatten(), torch.nn.Linear(8, 3)),
           "a layer used twice (per-image gradients)": TwiceThroughOneLayer}


@pytest.mark.parametrize("make_solver", SOLVERS.values(), ids=SOLVERS)
def test_fisher_diagonal_matches_per_sample_gradients(make_solver):
    torch.manual_seed(0)
    solver = make_solver()
    x = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    fisher = strategies.fisher_diagonal(solver, x, torch.Generator().manual_seed(0), chunk=7)
    gen, expected = torch.Generator().manual_seed(0), {n: torch.zeros_like(p) for n, p in solver.named_parameters()}
    for i in range(0, 20, 7):  # the same sampled labels, one backward pass per image
        images = x[i:i + 7].float() / 255
        labels = torch.multinomial(torch.softmax(solver(images), -1), 1, generator=gen).squeeze(1)
        for image, label in zip(images, labels):
            solver.zero_grad()
            F.cross_entropy(solver(image[None]), label[None]).backward()
            for n, p in solver.named_parameters():
                expected[n] += p.grad ** 2 / 20
    assert fisher.keys() == expected.keys()
    assert all(torch.allclose(fisher[n], expected[n], atol=1e-7) for n in fisher)


def tied() -> torch.nn.Sequential:
    stack = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 16))
    stack[3].weight = stack[1].weight  # one weight in two layers
    return stack


def mlp_like(*between: torch.nn.Module) -> torch.nn.Sequential:
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 8), *between, torch.nn.Linear(8, 3))


@pytest.mark.parametrize("make_solver, closed", [
    (lambda: nets.MLP((1, 4, 4), hidden=(8,), n_classes=3), True), (lambda: mlp_like(torch.nn.ReLU()), True),
    (lambda: mlp_like(torch.nn.ReLU(inplace=True)), False), (lambda: mlp_like(torch.nn.BatchNorm1d(8)), False),
    (lambda: mlp_like(torch.nn.Dropout(0.5)), False), (tied, False),
    (lambda: torch.nn.Sequential(torch.nn.Linear(4, 3)), False),
    (lambda: type("MyMLP", (nets.MLP,), {"forward": lambda self, x: self.net(x).cumsum(0)})((1, 4, 4)), False)],
    ids=["MLP", "Sequential", "in-place ReLU", "batch norm", "dropout", "tied weights", "no flatten", "own forward"])
def test_the_closed_form_serves_only_stacks_whose_images_cannot_mix(make_solver, closed):
    """Per image, and no weight used twice: otherwise Σ_k size(δ_k a_kᵀ) is not the gradient's size."""
    assert (strategies.regularization.linear_stack(make_solver()) is not None) == closed


def test_the_closed_form_holds_for_frozen_weights_and_under_no_grad():
    torch.manual_seed(0)
    solver = nets.MLP((1, 4, 4), hidden=(8,), n_classes=3)
    solver.net[1].requires_grad_(False)  # a frozen first layer still gets its importance, as per-image gradients give
    x, labels = torch.rand(10, 1, 4, 4), torch.randint(0, 3, (10,))
    scalar = strategies.regularization.log_likelihood
    with torch.no_grad():
        closed = strategies.regularization.summed_gradient_sizes(solver, x, labels, scalar, torch.square)
    per_image = strategies.regularization.per_sample_gradients(solver, x, labels, scalar)
    assert closed.keys() == per_image.keys()
    assert all(torch.allclose(closed[n], g.square().sum(0), atol=1e-7) for n, g in per_image.items())


def test_an_mlp_s_importances_take_no_per_image_gradients(monkeypatch):
    """The closed form Σ_k size(δ_k) size(a_k)ᵀ serves a network of linear layers: no N gradients are formed."""
    def refuse(*args):
        raise AssertionError("per-image gradients formed")

    monkeypatch.setattr("grlib.continual.strategies.regularization.per_sample_gradients", refuse)
    x = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    solver = SOLVERS["mlp (closed form)"]()
    strategies.fisher_diagonal(solver, x, torch.Generator().manual_seed(0))
    strategies.output_sensitivity(solver, x)
    with pytest.raises(AssertionError, match="per-image"):
        strategies.output_sensitivity(SOLVERS["conv (per-image gradients)"](), x)


@pytest.mark.parametrize("make", [lambda s, strength: strategies.EWC(s, strength=1e6 * strength, **KW),
                                  lambda s, strength: strategies.SI(s, strength=1e2 * strength, **KW)],
                         ids=["ewc", "si"])
def test_a_strong_penalty_holds_the_important_weights_near_the_anchor(make):
    """Σ_i importance_i (θ_i − θ*_i)² after task 2: tiny with the penalty, not without it."""
    stream = synthetic_stream()
    moved = {}
    for strength in (0, 1):
        strategy = make(small_solver(), strength)
        strategy.learn(stream, 0, progress=False)  # identical for both: no penalty on the first task
        anchor = {n: p.detach().clone() for n, p in strategy.solver.named_parameters()}
        importance = {n: v.clone() for n, v in getattr(strategy, "fisher", getattr(strategy, "importance", {})).items()}
        strategy.learn(stream, 1, progress=False)
        moved[strength] = sum(float((importance[n] * (p.detach() - anchor[n]) ** 2).sum())
                              for n, p in strategy.solver.named_parameters())
    assert moved[1] < 0.05 * moved[0]


def test_ewc_penalty_is_the_formula():
    stream = synthetic_stream()
    ewc = strategies.EWC(small_solver(), strength=10.0, **KW)
    ewc.learn(stream, 0, progress=False)
    assert all((f >= 0).all() for f in ewc.fisher.values()) and sum(f.sum() for f in ewc.fisher.values()) > 0
    with torch.no_grad():
        for p in ewc.solver.parameters():
            p.add_(0.01)
    x, y = stream[1].train_x[:8].float() / 255, stream[1].train_y[:8]
    ce = F.cross_entropy(ewc.solver(x), y)
    penalty = sum((ewc.fisher[n] * 0.01 ** 2).sum() for n, _ in ewc.solver.named_parameters())
    assert torch.allclose(ewc.loss(x, y, stream, 1), ce + 10.0 / 2 * penalty, rtol=1e-4)


def test_si_importance_grows_on_weights_that_reduced_the_loss():
    stream = synthetic_stream()
    si = strategies.SI(small_solver(), strength=1.0, **KW)
    si.learn(stream, 0, progress=False)
    total = sum(float(o.sum()) for o in si.importance.values())
    assert total > 0  # learning task 1 lowered its loss: positive path integral
    first_layer = si.importance["net.1.weight"]
    assert first_layer[:, 0:4].abs().sum() > 0  # the weights reading the class pixels of task 1 matter


@pytest.mark.parametrize("make", [lambda s: strategies.EWC(s, strength=100.0, **KW),
                                  lambda s: strategies.SI(s, strength=1.0, **KW),
                                  lambda s: strategies.ER(s, ClassBalancedBuffer(8, 4), **KW)], ids=["ewc", "si", "er"])
def test_strategies_resume_from_the_cache(make):
    stream = synthetic_stream()
    trained = make(small_solver())
    first = run(trained, stream, cache=True)
    resumed = make(small_solver())
    resumed.learn = Untrainable.learn.__get__(resumed)  # any training now would fail the test
    assert run(resumed, stream, cache=True).R == first.R
    assert all(torch.equal(p, q) for p, q in zip(resumed.solver.parameters(), trained.solver.parameters()))
    continued = make(small_solver(seed=3))
    continued.load_state_dict(resumed.state_dict())  # the loaded state is complete: task 2 again from it
    assert continued.state_dict().keys() == first_state_keys(make)


def first_state_keys(make):
    return make(small_solver()).state_dict().keys()


def test_bad_hyperparameters_are_errors():
    with pytest.raises(ValueError, match="EWC"):
        strategies.EWC(small_solver(), strength=-1)
    with pytest.raises(ValueError, match="SI"):
        strategies.SI(small_solver(), strength=1, damping=0)


@pytest.mark.parametrize("make_solver", SOLVERS.values(), ids=SOLVERS)
def test_mas_importance_is_the_mean_absolute_gradient_of_the_squared_output_norm(make_solver):
    torch.manual_seed(0)
    solver = make_solver()
    x = torch.randint(0, 256, (20, 1, 4, 4), dtype=torch.uint8)
    omega = strategies.output_sensitivity(solver, x, chunk=7)
    expected = {n: torch.zeros_like(p) for n, p in solver.named_parameters()}
    for image in x.float() / 255:  # one backward pass per image: |∂‖f(x)‖² / ∂θ|
        solver.zero_grad()
        solver(image[None]).pow(2).sum().backward()
        for n, p in solver.named_parameters():
            expected[n] += p.grad.abs() / 20
    assert omega.keys() == expected.keys()
    assert all(torch.allclose(omega[n], expected[n], atol=1e-6) for n in omega)


def test_mas_accumulates_importance_and_holds_weights():
    stream = synthetic_stream()
    mas = strategies.MAS(small_solver(), strength=1.0, importance_samples=30, **KW)
    mas.learn(stream, 0, progress=False)
    first = {n: v.clone() for n, v in mas.importance.items()}
    assert sum(float(v.sum()) for v in first.values()) > 0
    mas.learn(stream, 1, progress=False)
    assert all((mas.importance[n] >= first[n]).all() for n in first)  # Ω ← Ω + Ω_t never shrinks


@pytest.mark.parametrize("merge", ["mean", "mode"])
def test_imm_merges_the_task_networks(merge, monkeypatch):
    """mean-IMM: θ* = Σ_k θ_k / t; mode-IMM: θ* = Σ_k F_k θ_k / Σ_k F_k, element by element."""
    def fake_fisher(solver, x, generator):  # an importance that differs from weight to weight
        return {n: p.detach().abs() + 0.1 for n, p in solver.named_parameters()}
    monkeypatch.setattr("grlib.continual.strategies.imm.fisher_diagonal", fake_fisher)
    stream = synthetic_stream()
    imm = strategies.IMM(small_solver(), merge=merge, **KW)
    networks = []
    for t in range(2):
        imm.learn(stream, t, progress=False)
        networks.append({n: v.clone() for n, v in imm.task_weights.items()})
    for n, p in imm.solver.named_parameters():
        if merge == "mean":
            expected = (networks[0][n] + networks[1][n]) / 2
        else:
            f = [net[n].abs() + 0.1 + imm.fisher_floor for net in networks]
            expected = (f[0] * networks[0][n] + f[1] * networks[1][n]) / (f[0] + f[1])
        assert torch.allclose(p, expected, atol=1e-6), n
    assert not torch.allclose(networks[0]["net.1.weight"], networks[1]["net.1.weight"])


def test_imm_trains_each_task_from_the_previous_task_network_not_the_merge():
    stream = synthetic_stream()
    imm = strategies.IMM(small_solver(), merge="mean", l2_transfer=1e3, **KW)
    imm.learn(stream, 0, progress=False)
    merged = {n: p.detach().clone() for n, p in imm.solver.named_parameters()}
    imm.before_task(stream, 1)  # weight-transfer
    assert all(torch.equal(p, imm.task_weights[n]) for n, p in imm.solver.named_parameters())
    x, y = stream[1].train_x[:8].float() / 255, stream[1].train_y[:8]
    assert torch.allclose(imm.loss(x, y, stream, 1), F.cross_entropy(imm.solver(x), y))  # at θ_{t−1}: no L2 term
    with torch.no_grad():
        for p in imm.solver.parameters():
            p.add_(0.01)
    n_weights = sum(p.numel() for p in imm.solver.parameters())
    l2 = 1e3 * n_weights * 0.01 ** 2  # λ‖θ − θ_{t−1}‖²
    assert torch.allclose(imm.loss(x, y, stream, 1), F.cross_entropy(imm.solver(x), y) + l2, rtol=1e-4)
    assert merged.keys() == imm.task_weights.keys()
    with pytest.raises(ValueError, match="merge 'mean' or 'mode'"):
        strategies.IMM(small_solver(), merge="median")


@pytest.mark.parametrize("make", [lambda s: strategies.MAS(s, strength=1.0, **KW),
                                  lambda s: strategies.IMM(s, merge="mode", l2_transfer=0.1, **KW)],
                         ids=["mas", "imm"])
def test_mas_and_imm_resume_from_the_cache(make):
    test_strategies_resume_from_the_cache(make)


def test_non_finite_hyperparameters_are_errors():
    for bad in (float("inf"), float("nan")):
        with pytest.raises(ValueError, match="lr must be a finite number"):
            strategies.Finetune(small_solver(), lr=bad)
        with pytest.raises(ValueError, match="strength must be a finite number"):
            strategies.MAS(small_solver(), strength=bad)


def test_drop_transfer_keeps_each_weight_or_falls_back_to_the_previous_task_and_is_unbiased():
    stream = synthetic_stream()
    imm = strategies.IMM(small_solver(), merge="mean", drop_transfer=0.5, **KW)
    imm.learn(stream, 0, progress=False)
    imm.before_task(stream, 1)
    with torch.no_grad():
        for p in imm.solver.parameters():
            p.add_(0.02)  # θ = θ_{t−1} + 0.02 everywhere
    imm.rng = torch.Generator().manual_seed(0)
    dropped = imm.dropped_weights()
    for n, w in dropped.items():
        delta = w - imm.task_weights[n]
        assert torch.all(torch.isclose(delta, torch.zeros_like(delta), atol=1e-6) |
                         torch.isclose(delta, torch.full_like(delta, 0.04), atol=1e-6))  # 0 or 0.02 / (1 − p)
    kept = torch.cat([(w - imm.task_weights[n]).flatten() > 0.01 for n, w in dropped.items()]).float().mean()
    assert abs(kept.item() - 0.5) < 0.05  # E[θ̂] = θ


def rotation_solver():
    return nets.make_rotation_solver("mlp", (1, 4, 4), 4, seed=0, device=torch.device("cpu"))


def test_pass_prototypes_radius_and_its_loss_are_the_formulas():
    stream = synthetic_stream()
    pas = strategies.PASS(rotation_solver(), **KW)
    pas.learn(stream, 0, progress=False)
    with torch.no_grad():
        features = pas.solver.features(stream[0].train_x.float() / 255)
    for c in (0, 1):
        assert torch.allclose(pas.prototypes[c], features[stream[0].train_y == c].mean(0), atol=1e-5)
    spread = [torch.cov(features[stream[0].train_y == c].T).trace() / features.shape[1] for c in (0, 1)]
    assert pas.radius == pytest.approx(float(torch.stack(spread).mean().sqrt()), rel=1e-5)
    x, y = stream[1].train_x[:8].float() / 255, stream[1].train_y[:8]
    pas.rng = torch.Generator().manual_seed(3)
    loss = pas.loss(x, y, stream, 1)
    x4, y4 = torch.cat([torch.rot90(x, k, (2, 3)) for k in range(4)]), torch.cat([4 * y + k for k in range(4)])
    f = pas.solver.features(x4)
    expected = F.cross_entropy(pas.solver.head(f) / 0.1, y4) + 10 * torch.dist(f, pas.old_features(x4), 2)
    rng = torch.Generator().manual_seed(3)
    pick = torch.tensor([0, 1])[torch.randint(2, (8,), generator=rng)]
    protos = torch.stack([pas.prototypes[int(c)] for c in pick]) + pas.radius * torch.randn(8, f.shape[1], generator=rng)
    expected = expected + 10 * F.cross_entropy(pas.solver.head(protos) / 0.1, 4 * pick)
    assert torch.allclose(loss, expected, atol=1e-4)
    assert pas.solver(x).shape == (8, 4)  # the unrotated classes' logits, for evaluation


def test_pass_keeps_more_than_finetuning_and_resumes_from_the_cache():
    stream = synthetic_stream()
    finetune = run(strategies.Finetune(small_solver(), **KW), stream)
    pas = run(strategies.PASS(rotation_solver(), **KW), stream)
    assert pas.R[1][0] > finetune.R[1][0] + 20
    test_strategies_resume_from_the_cache(lambda s: strategies.PASS(rotation_solver(), **KW))
    with pytest.raises(ValueError, match="rotation"):
        strategies.PASS(small_solver(), **KW)
