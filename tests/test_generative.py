"""Generative replay's mechanics, with a stand-in generator that replays what it was shown."""
import pytest
import torch
import torch.nn.functional as F

from grlib import continual
from grlib.continual.strategies import DGR, Finetune
from grlib.continual.strategies.generative import balanced_indices, match_histogram, to_uint8
from helpers import small_solver, synthetic_stream

KW = dict(iters=150, batch_size=32, lr=1e-2)


class Memorizer:
    """A 'perfect' generator: samples uniformly from every image it was trained on; records what it saw."""
    settings = {"kind": "memorizer"}

    def __init__(self):
        self.seen: list[torch.Tensor] = []
        self.batches: list[torch.Tensor] = []

    def train(self, sample_real, iters, batch_size, progress=True, desc=""):
        for _ in range(iters):
            batch, _ = sample_real(batch_size)
            self.batches.append(batch)
            self.seen.append(batch)
        return {"critic_loss": [0.0] * iters, "generator_loss": [0.0] * iters, "wasserstein": [0.0] * iters}

    def sample(self, n, y=None):
        assert y is None, "an unconditional generator"
        pool = torch.cat(self.seen)
        return pool[torch.randint(len(pool), (n,))]

    def state_dict(self):
        return {"seen": torch.cat(self.seen) if self.seen else torch.empty(0)}

    def load_state_dict(self, state):
        self.seen = [state["seen"]]


def test_replay_from_a_perfect_generator_prevents_forgetting():
    stream = synthetic_stream()
    dgr = DGR(small_solver(), Memorizer(), gen_iters=20, gen_batch_size=16, pool_size=200, **KW)
    result = continual.run(dgr, stream, cache=False, progress=False)
    finetune = continual.run(Finetune(small_solver(), **KW), stream, cache=False, progress=False)
    assert result.R[1][0] > 90 and finetune.R[1][0] < 20
    assert len(dgr.pool_label_counts) == 1
    assert sum(dgr.pool_label_counts[0]) == 200 and dgr.pool_label_counts[0][2:] == [0, 0]  # only old classes


def test_generator_learns_one_part_real_to_t_parts_replay():
    stream = synthetic_stream()
    gen = Memorizer()
    dgr = DGR(small_solver(), gen, gen_iters=10, gen_batch_size=20, pool_size=100, **KW)
    dgr.learn(stream, 0, progress=False)
    assert all(len(b) == 20 for b in gen.batches)
    dgr.before_task(stream, 1)
    sample = dgr.generator_data(stream, 1)  # what the generator learns task 2 from
    # class c of the synthetic data lights pixel c: count which images in task 2's batches are task-1 images
    from_pool = [int((sample(20)[0].flatten(1)[:, :2].max(1).values > 0.9).sum()) for _ in range(10)]
    assert from_pool == [10] * 10  # second task: half of every batch replayed


def test_the_generator_is_not_trained_on_the_last_task():
    stream = synthetic_stream()
    gen = Memorizer()
    dgr = DGR(small_solver(), gen, gen_iters=10, gen_batch_size=20, pool_size=100, **KW)
    continual.run(dgr, stream, cache=False, progress=False)
    assert len(gen.batches) == 10 and len(dgr.generator_history) == len(dgr.samples) == 1  # task 1 only
    assert len(dgr.pool_label_counts) == 1 and torch.equal(dgr.level_counts, torch.bincount(
        torch.cat([task.train_x for task in stream]).flatten().long(), minlength=256))  # every task's levels


def test_soft_labels_distill_the_previous_solver():
    stream = synthetic_stream()
    dgr = DGR(small_solver(), Memorizer(), gen_iters=5, gen_batch_size=8, pool_size=50, soft_labels=True,
              temperature=2.0, **KW)
    dgr.learn(stream, 0, progress=False)
    dgr.rng = torch.Generator().manual_seed(0)
    dgr.before_task(stream, 1)
    targets = dgr.pool["logits"]
    assert targets.shape == (50, 4)
    x, y = stream[1].train_x[:4].float() / 255, stream[1].train_y[:4]
    with torch.no_grad():  # the solver still equals its teacher: the distillation term is zero, only r·L_new is left
        loss_now = dgr.loss(x, y, stream, 1)
        new_only = torch.nn.functional.cross_entropy(dgr.solver(x), y)
    assert torch.allclose(loss_now, 0.5 * new_only, atol=1e-5)


def test_balanced_indices_give_each_class_an_equal_share():
    labels = torch.tensor([0] * 90 + [1] * 9 + [2] * 1)
    idx = balanced_indices(labels, (0, 1, 2, 3), 30, torch.Generator().manual_seed(0))
    assert torch.bincount(labels[idx]).tolist() == [10, 10, 10]  # class 3 never generated: nothing to draw


def test_to_uint8_rounds_and_clamps():
    assert to_uint8(torch.tensor([-0.2, 0.0, 0.5, 1.0, 1.3])).tolist() == [0, 0, 128, 255, 255]


class ClassMemory:
    """A stand-in diffusion model: returns remembered images of the requested classes; records the guidance."""
    settings = {"kind": "class-memory"}

    def __init__(self):
        self.images, self.labels, self.calls = None, None, []

    def train(self, sample_real, iters, batch_size, progress=True, desc=""):
        return {"loss": [0.0] * iters}

    def remember(self, x, y):
        self.images, self.labels = x, y

    def sample(self, n, y=None, steps=None, eta=0.0, guide=None, sampler="ddim"):
        self.calls.append({"n": n, "steps": steps, "eta": eta, "guided": guide is not None, "scale": guide.scale,
                           "sampler": sampler})
        if y is None:
            return self.images[torch.randint(len(self.images), (n,))]
        return torch.stack([self.images[(self.labels == c).nonzero()[0, 0]] for c in y.tolist()])

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_ddgr_replays_every_old_class_equally_guided_and_labelled_by_its_target():
    from grlib.continual.strategies import DDGR
    stream = synthetic_stream()
    memory = ClassMemory()
    memory.remember(torch.cat([t.train_x for t in stream]).float() / 255, torch.cat([t.train_y for t in stream]))
    ddgr = DDGR(small_solver(), memory, gen_iters=3, pool_size=40, sample_steps=7, guidance_scale=2.5, eta=0.5, **KW)
    ddgr.learn(stream, 0, progress=False)
    ddgr.rng = torch.Generator().manual_seed(0)
    ddgr.before_task(stream, 1)
    assert torch.bincount(ddgr.pool["y"]).tolist() == [20, 20]  # old classes 0 and 1, in equal numbers
    assert any(c["guided"] and c["scale"] == 2.5 and c["steps"] == 7 and c["eta"] == 0.5 for c in memory.calls)
    assert ddgr.pool_label_counts[0][:2] == [20, 20]  # the old solver agrees with every target
    ddgr.guided_samples(torch.tensor([0, 1]), scale=0.0)  # an ablation asks for another scale, same sampler
    assert memory.calls[-1] == {"n": 2, "steps": 7, "eta": 0.5, "guided": True, "scale": 0.0, "sampler": "ddim"}
    result = continual.run(DDGR(small_solver(), memory, gen_iters=3, pool_size=40, **KW), stream,
                           cache=False, progress=False)
    assert result.R[1][0] > 90
    with pytest.raises(ValueError, match="0 ≤ eta ≤ 1"):
        DDGR(small_solver(), memory, gen_iters=3, eta=1.5, **KW)
    with pytest.raises(ValueError, match="deterministic"):  # before any training
        DDGR(small_solver(), memory, gen_iters=3, eta=0.5, sampler="dpm++2m", **KW)
    with pytest.raises(ValueError, match="unknown sampler 'euler'"):
        DDGR(small_solver(), memory, gen_iters=3, sampler="euler", **KW)
    DDGR(small_solver(), memory, gen_iters=3, pool_size=40, sampler="dpm++2m", **KW).draw(2, (0, 1))
    assert memory.calls[-1]["sampler"] == "dpm++2m"


def test_histogram_matching_keeps_images_of_the_reference_histogram_and_clears_a_haze():
    torch.manual_seed(0)
    real = (torch.rand(20, 1, 28, 28) < 0.2).float()  # black backgrounds, white strokes
    real[:, :, :2] = torch.randint(241, (20, 1, 2, 28)) / 255  # and a few rows of greys
    counts = torch.bincount(to_uint8(real).flatten().long(), minlength=256)
    assert torch.equal(match_histogram(real, counts), real)  # matched to its own histogram: unchanged
    hazy = (real + 5 / 255).clamp(0, 1)  # every pixel five grey levels lighter, white stays white
    matched = match_histogram(hazy, counts)
    assert torch.allclose(matched, real)  # the levels keep their order, so the original comes back
    assert (to_uint8(matched) == 0).float().mean() == (to_uint8(real) == 0).float().mean()


def test_matched_levels_follow_the_real_images_seen():
    stream = synthetic_stream()  # background pixels 0..39, the class's two pixels 255
    dgr = DGR(small_solver(), Memorizer(), gen_iters=5, gen_batch_size=8, pool_size=50, match_levels=True, **KW)
    dgr.learn(stream, 0, progress=False)
    expected = torch.bincount(stream[0].train_x.flatten().long(), minlength=256)
    assert torch.equal(dgr.level_counts, expected)
    dgr.generator.seen = [(t + 40 / 255).clamp(0, 1) for t in dgr.generator.seen]  # a generator with a haze
    dgr.rng = torch.Generator().manual_seed(0)
    dgr.before_task(stream, 1)
    pool = dgr.pool["x"].flatten(1)
    assert pool.max() == 255 and pool.float().mean() < stream[0].train_x.float().mean() + 5  # the haze is gone
    restored = DGR(small_solver(), Memorizer(), gen_iters=5, match_levels=True, **KW)
    restored.load_state_dict(dgr.state_dict())
    assert torch.equal(restored.level_counts, expected)


@pytest.mark.parametrize("soft_labels", [False, True], ids=["dgr-hard-labels", "ddgr-distillation"])
def test_generative_replay_trains_on_the_task_il_outputs(soft_labels):
    """In task-IL every sample, new or replayed, competes only among its own task's classes, as in ER."""
    from grlib.continual import scenario_logits
    from grlib.continual.strategies import DDGR
    from grlib.continual.strategies.replay import distillation
    stream = synthetic_stream("task")
    if soft_labels:
        memory = ClassMemory()
        memory.remember(torch.cat([t.train_x for t in stream]).float() / 255, torch.cat([t.train_y for t in stream]))
        strategy = DDGR(small_solver(), memory, gen_iters=3, pool_size=40, soft_labels=True, **KW)
    else:
        strategy = DGR(small_solver(), Memorizer(), gen_iters=5, gen_batch_size=8, pool_size=40, **KW)
    strategy.learn(stream, 0, progress=False)
    strategy.rng = torch.Generator().manual_seed(0)
    strategy.before_task(stream, 1)
    x, y = stream[1].train_x[:6].float() / 255, stream[1].train_y[:6]
    strategy.rng = torch.Generator().manual_seed(1)
    loss = strategy.loss(x, y, stream, 1)
    strategy.rng = torch.Generator().manual_seed(1)
    x_old, y_old, teacher = strategy.replay_batch(strategy.batch_size)
    logits = strategy.solver(torch.cat([x, x_old]))
    masked = scenario_logits(logits, torch.cat([y, y_old]), stream)
    assert torch.isinf(masked[:6, :2]).all() and torch.isinf(masked[6:, 2:]).all()  # new: 2/3 only; replay: 0/1
    if soft_labels:
        replay = distillation(masked[6:], scenario_logits(teacher, y_old, stream), 2.0)
    else:
        replay = F.cross_entropy(masked[6:], y_old)
    expected = 0.5 * F.cross_entropy(masked[:6], y) + 0.5 * replay
    assert torch.allclose(loss, expected) and torch.isfinite(loss)
    unmasked = 0.5 * F.cross_entropy(logits[:6], y) + 0.5 * F.cross_entropy(logits[6:], y_old)
    assert not torch.allclose(loss, unmasked)


class ConditionalMemory(Memorizer):
    """A 'perfect' class-conditional generator: draws remembered images of the classes asked for."""
    settings = {"kind": "conditional-memory"}

    def __init__(self, alignment: float = 0.0):
        super().__init__()
        self.alignment, self.labels = alignment, []

    def train(self, sample_real, iters, batch_size, progress=True, desc=""):
        for _ in range(iters):
            x, y = sample_real(batch_size)
            self.batches.append(x)
            self.seen.append(x)
            self.labels.append(y)
        return {"loss": [0.0] * iters}

    def sample(self, n, y=None):
        pool, labels = torch.cat(self.seen), torch.cat(self.labels)
        return torch.stack([pool[(labels == c).nonzero()[0, 0]] for c in y.tolist()])


@pytest.mark.parametrize("variant", ["jtr", "ra"])
def test_mergan_replays_equal_classes_labelled_by_construction_and_ra_trains_on_real_data_only(variant):
    from grlib.continual.strategies import MeRGAN
    stream = synthetic_stream()
    gen = ConditionalMemory(alignment=1.0 if variant == "ra" else 0.0)
    mergan = MeRGAN(small_solver(), gen, gen_iters=10, gen_batch_size=20, pool_size=40, variant=variant, **KW)
    result = continual.run(mergan, stream, cache=False, progress=False)
    assert torch.bincount(mergan.pool["y"]).tolist() == [20, 20]  # the classes of task 1, asked for equally
    sample = mergan.generator_data(stream, 1)  # what the generator would learn task 2 from
    old_share = [int((sample(20)[0].flatten(1)[:, :2].max(1).values > 0.9).sum()) for _ in range(10)]
    assert old_share == ([10] * 10 if variant == "jtr" else [0] * 10)  # JTR: half replay at t = 2; RA: none
    assert result.R[1][0] > 90
    with pytest.raises(ValueError, match="replay alignment"):
        MeRGAN(small_solver(), ConditionalMemory(), gen_iters=1, variant="ra", **KW)


def test_mergan_fresh_replay_draws_the_old_classes_from_the_previous_generator_at_every_step():
    from grlib.continual.strategies import MeRGAN
    stream = synthetic_stream()
    gen = ConditionalMemory()
    mergan = MeRGAN(small_solver(), gen, gen_iters=10, gen_batch_size=20, pool_size=40, fresh_replay=True, **KW)
    mergan.learn(stream, 0, progress=False)
    remembered = torch.cat(gen.seen).clone()
    sample = mergan.generator_data(stream, 1)
    for images in gen.seen:  # the generator moves on; the frozen copy must not
        images.zero_()
    x, y = sample(20)
    old = y < 2
    assert old.sum() == 10 and set(y[old].tolist()) <= {0, 1} and set(y[~old].tolist()) <= {2, 3}
    for image, c in zip(x[old], y[old]):  # each old image is what G_{t-1} draws for its class
        assert image.max() > 0 and torch.equal(image, remembered[(torch.cat(gen.labels) == c).nonzero()[0, 0]])
