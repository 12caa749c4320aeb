"""Replay buffers: budgets, balance, reservoir probabilities, bytes, errors."""
import pytest
import torch

from grlib.continual.memory import ClassBalancedBuffer, ReservoirBuffer


def task_data(classes, n_per_class=50, start=0):
    """Images that carry their own id (start, start + 1, ...) in two pixels: id % 256 and id // 256."""
    y = torch.tensor(classes).repeat_interleave(n_per_class)
    ids = torch.arange(len(y)) + start
    x = torch.zeros(len(y), 1, 2, 2, dtype=torch.uint8)
    x[:, 0, 0, 0], x[:, 0, 0, 1] = (ids % 256).to(torch.uint8), (ids // 256).to(torch.uint8)
    return x, y


def ids(x):
    return x[:, 0, 0, 0].long() + 256 * x[:, 0, 0, 1].long()


def test_class_balanced_shrinks_old_classes_as_new_ones_arrive():
    buf, gen = ClassBalancedBuffer(capacity=20, n_classes=10), torch.Generator().manual_seed(0)
    buf.add(*task_data([0, 1]), gen)
    assert torch.bincount(buf.y).tolist() == [10, 10]
    kept_zeros = set(ids(buf.x[buf.y == 0]).tolist())
    buf.add(*task_data([2, 3, 4], start=100), gen)
    assert len(buf) == 20 and torch.bincount(buf.y, minlength=5).tolist() == [4, 4, 4, 4, 4]
    assert set(ids(buf.x[buf.y == 0]).tolist()) <= kept_zeros  # old classes keep a subset of what they had
    buf.add(*task_data([5, 6, 7], start=200), gen)
    counts = torch.bincount(buf.y, minlength=8)
    assert len(buf) == 20 and counts.max() - counts.min() <= 1  # 20 / 8: four classes get 3, four get 2


def test_class_balanced_shares_a_returning_class_between_tasks():
    buf, gen = ClassBalancedBuffer(capacity=40, n_classes=2), torch.Generator().manual_seed(0)
    buf.add(*task_data([0, 1], start=0), gen)
    buf.add(*task_data([0, 1], start=100), gen)  # domain-IL: the same labels again
    from_task = (ids(buf.x) >= 100).long()
    assert torch.bincount(from_task * 2 + buf.y).tolist() == [10, 10, 10, 10]


def test_reservoir_keeps_each_sample_with_equal_probability():
    hits = torch.zeros(300)
    for seed in range(200):
        buf, gen = ReservoirBuffer(capacity=30), torch.Generator().manual_seed(seed)
        for start in (0, 100, 200):  # three tasks of 100 samples
            buf.add(*task_data([start // 100], n_per_class=100, start=start), gen)
        assert len(buf) == 30 and buf.seen == 300
        assert torch.equal(buf.y, ids(buf.x) // 100)  # labels travel with their images
        hits[ids(buf.x)] += 1
    per_task = hits.view(3, 100).sum(1) / (200 * 30)
    assert torch.allclose(per_task, torch.full((3,), 1 / 3), atol=0.03)  # not biased to old or new tasks


def test_reservoir_fills_up_across_small_tasks():
    buf, gen = ReservoirBuffer(capacity=150), torch.Generator().manual_seed(0)
    buf.add(*task_data([0], n_per_class=100), gen)
    assert len(buf) == 100
    buf.add(*task_data([1], n_per_class=100, start=100), gen)
    assert len(buf) == 150 and buf.seen == 200


def test_bytes_sampling_and_state():
    buf, gen = ClassBalancedBuffer(capacity=10, n_classes=2), torch.Generator().manual_seed(0)
    assert buf.nbytes == 0 and len(buf) == 0
    buf.add(*task_data([0, 1]), gen)
    assert buf.nbytes == 10 * 4 + 10 * 8  # ten 2×2 uint8 images and ten int64 labels
    x, y = buf.sample(64, gen)
    assert x.shape == (64, 1, 2, 2) and set(y.tolist()) <= {0, 1}
    copy = ClassBalancedBuffer(capacity=10, n_classes=2)
    copy.load_state_dict(buf.state_dict())
    assert torch.equal(copy.x, buf.x) and copy.tasks_added == 1


def test_bad_budgets_are_clear_errors():
    for bad in (0, -5):
        with pytest.raises(ValueError, match="at least one sample"):
            ReservoirBuffer(bad)
        with pytest.raises(ValueError, match="at least one sample"):
            ClassBalancedBuffer(bad, 10)
    with pytest.raises(ValueError, match="one sample of each of 10 classes"):
        ClassBalancedBuffer(5, n_classes=10)
