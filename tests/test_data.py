from __future__ import annotations


import numpy as np
import pytest
import torch
import torchvision

from grlib.core import config
from grlib.continual import data
from helpers import pickle_file, write_idx, write_mnist_like


def test_root_precedence_argument_then_env_then_repo(tmp_path, monkeypatch):
    monkeypatch.delenv("GRLIB_DATA", raising=False)
    assert data.data_root() == config.REPO_ROOT / "data"
    monkeypatch.setenv("GRLIB_DATA", str(tmp_path / "env"))
    assert data.data_root() == tmp_path / "env"
    assert data.data_root(tmp_path / "arg") == tmp_path / "arg"


def test_mnist_loads_as_uint8_nchw(tiny_mnist):
    root, arrays = tiny_mnist
    x, y = data.load("mnist", train=True, root=root, download=False)
    assert x.dtype == torch.uint8 and x.shape == (60, 1, 28, 28)
    assert y.dtype == torch.int64
    assert torch.equal(y, torch.as_tensor(arrays["train"][1]))
    assert torch.equal(x[:, 0], torch.as_tensor(arrays["train"][0]))
    x_test, _ = data.load("mnist", train=False, root=root, download=False)
    assert x_test.shape == (20, 1, 28, 28)


def test_fashion_mnist_uses_its_own_folder(tmp_path):
    arrays = write_mnist_like(tmp_path, "FashionMNIST", seed=3)
    _, y = data.load("fashion-mnist", root=tmp_path, download=False)
    assert torch.equal(y, torch.as_tensor(arrays["train"][1]))
    with pytest.raises(data.DatasetNotFoundError):
        data.load("mnist", root=tmp_path, download=False)


def test_missing_dataset_error_names_files_folder_and_remedies(tmp_path):
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist", train=True, root=tmp_path, download=False)
    message = str(info.value)
    assert "mnist" in message and str(tmp_path) in message
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):
        assert name in message
    assert "GRLIB_DATA" in message and "download" in message


def test_failed_download_is_reported_with_the_files(tmp_path, monkeypatch):
    def offline(self):
        raise OSError("Name or service not known")
    monkeypatch.setattr(torchvision.datasets.MNIST, "download", offline)
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist", train=False, root=tmp_path, download=True)
    assert "download failed" in str(info.value) and "Name or service not known" in str(info.value)
    assert "t10k-images-idx3-ubyte" in str(info.value)


def test_corrupt_file_is_a_clear_error(tiny_mnist):
    root, _ = tiny_mnist
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    images.write_bytes(images.read_bytes()[:1000])  # truncated
    with pytest.raises(data.DatasetNotFoundError, match="corrupt"):
        data.load("mnist", train=True, root=root, download=False)


def test_a_file_with_a_valid_header_and_random_contents_is_named_before_anything_loads(tiny_mnist):
    root, _ = tiny_mnist
    images = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    raw = bytearray(images.read_bytes())
    raw[16:] = np.random.default_rng(0).integers(0, 256, len(raw) - 16, dtype=np.uint8).tobytes()  # header kept
    images.write_bytes(bytes(raw))
    with pytest.raises(data.DatasetNotFoundError) as info:
        data.load("mnist", train=True, root=root, download=False)
    message = str(info.value)
    assert str(images) in message and "MD5" in message and data.KNOWN_MD5["MNIST/raw/train-images-idx3-ubyte"] in message


def test_other_data_never_shares_a_cache_key(tmp_path):
    """The stream's settings, part of every checkpoint's key, carry a fingerprint of the data actually loaded."""
    write_mnist_like(tmp_path / "a", "MNIST", seed=0)
    a = data.split_stream("mnist", root=tmp_path / "a", groups=[[0, 1]])
    assert data.split_stream("mnist", root=tmp_path / "a", groups=[[0, 1]]).settings == a.settings
    write_mnist_like(tmp_path / "b", "MNIST", seed=1)  # the same files, other contents (a fixed copy, say)
    b = data.split_stream("mnist", root=tmp_path / "b", groups=[[0, 1]])
    assert a.settings["data"] != b.settings["data"] and a.settings["groups"] == b.settings["groups"]


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(ValueError, match="mnist, fashion-mnist, svhn, cifar10, cifar100"):
        data.load("imagenet")


def test_cifar10_and_cifar100_from_torchvision_pickles(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 3 * 32 * 32), dtype=np.uint8)  # CIFAR rows: 1024 R, 1024 G, 1024 B
    folder = tmp_path / "cifar-10-batches-py"
    train_list = [[f"data_batch_{i}", pickle_file(folder / f"data_batch_{i}", {"data": images, "labels": [i] * 6})]
                  for i in range(1, 6)]
    test_list = [["test_batch", pickle_file(folder / "test_batch", {"data": images[:2], "labels": [7, 8]})]]
    meta_md5 = pickle_file(folder / "batches.meta", {"label_names": [str(c) for c in range(10)]})
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "train_list", train_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "test_list", test_list)
    monkeypatch.setattr(torchvision.datasets.CIFAR10, "meta", {"filename": "batches.meta", "key": "label_names", "md5": meta_md5})
    x, y = data.load("cifar10", train=True, root=tmp_path, download=False)
    assert x.shape == (30, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [1] * 6 + [2] * 6 + [3] * 6 + [4] * 6 + [5] * 6
    assert torch.equal(x[0], torch.as_tensor(images[0]).view(3, 32, 32))  # channels first, pixels untouched
    _, y_test = data.load("cifar10", train=False, root=tmp_path, download=False)
    assert y_test.tolist() == [7, 8]

    folder = tmp_path / "cifar-100-python"
    md5 = pickle_file(folder / "train", {"data": images, "fine_labels": [99, 0, 5, 5, 1, 2]})
    test_md5 = pickle_file(folder / "test", {"data": images[:1], "fine_labels": [42]})
    meta_md5 = pickle_file(folder / "meta", {"fine_label_names": [str(c) for c in range(100)]})
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "train_list", [["train", md5]])
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "test_list", [["test", test_md5]])
    monkeypatch.setattr(torchvision.datasets.CIFAR100, "meta", {"filename": "meta", "key": "fine_label_names", "md5": meta_md5})
    x, y = data.load("cifar100", train=True, root=tmp_path, download=False)
    assert x.shape == (6, 3, 32, 32) and y.tolist() == [99, 0, 5, 5, 1, 2]


def test_svhn_from_a_mat_file(tmp_path, monkeypatch):
    import hashlib

    import scipy.io
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (32, 32, 3, 4), dtype=np.uint8)  # SVHN's .mat layout: H×W×C×N
    path = tmp_path / "SVHN" / "test_32x32.mat"
    path.parent.mkdir()
    scipy.io.savemat(path, {"X": images, "y": np.array([[10], [1], [2], [9]], dtype=np.uint8)})
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    split_list = dict(torchvision.datasets.SVHN.split_list, test=["", "test_32x32.mat", md5])
    monkeypatch.setattr(torchvision.datasets.SVHN, "split_list", split_list)
    x, y = data.load("svhn", train=False, root=tmp_path, download=False)
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.uint8
    assert y.tolist() == [0, 1, 2, 9]  # SVHN stores the digit 0 as 10
    assert torch.equal(x[3], torch.as_tensor(images[..., 3]).permute(2, 0, 1))


def test_split_stream_partitions_the_classes(tiny_mnist):
    root, arrays = tiny_mnist
    stream = data.split_stream("mnist", root=root)
    assert [task.classes for task in stream] == [(0, 1), (2, 3), (4, 5), (6, 7), (8, 9)]
    assert stream.scenario == "class" and len(stream) == 5 and stream.image_shape == (1, 28, 28)
    assert sum(len(task.train_y) for task in stream) == 60
    for task in stream:
        assert set(task.train_y.tolist()) == set(task.classes) and set(task.test_y.tolist()) == set(task.classes)
        assert torch.all(task.train_x[:, 0, 0, 0] // 20 == task.train_y)  # images travel with their labels
    assert stream.classes_up_to(2) == (0, 1, 2, 3, 4, 5)


def test_split_stream_custom_groups_and_bad_groups(tiny_mnist):
    root, _ = tiny_mnist
    stream = data.split_stream("mnist", groups=[[7], [0, 3, 5]], scenario="task", root=root)
    assert [task.classes for task in stream] == [(7,), (0, 3, 5)]
    assert set(stream[1].train_y.tolist()) == {0, 3, 5}
    for bad in ([[0, 1], [1, 2]], [[0], []], [[0, 10]]):
        with pytest.raises(ValueError, match="disjoint"):
            data.split_stream("mnist", groups=bad, root=root)
    with pytest.raises(ValueError, match="scenario"):
        data.split_stream("mnist", scenario="sideways", root=root)


def test_class_groups_first_then_equal_tasks_with_seeded_order():
    groups = data.class_groups(100, first=50, per_task=10)
    assert [len(g) for g in groups] == [50, 10, 10, 10, 10, 10] and groups[0] == list(range(50))
    shuffled = data.class_groups(100, 50, 10, order_seed=1993)
    assert shuffled == data.class_groups(100, 50, 10, order_seed=1993)
    assert shuffled != groups and sorted(c for g in shuffled for c in g) == list(range(100))
    assert data.class_groups(10, 2, 2) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    with pytest.raises(ValueError):
        data.class_groups(10, 3, 2)


def test_permuted_stream_applies_one_permutation_per_task(tmp_path):
    write_mnist_like(tmp_path, "MNIST")
    pixel = np.arange(784).reshape(28, 28)
    for split in ("train", "t10k"):  # images 0 and 1 together label every pixel position uniquely
        path = tmp_path / "MNIST" / "raw" / f"{split}-images-idx3-ubyte"
        images = np.frombuffer(path.read_bytes()[16:], dtype=np.uint8).reshape(-1, 28, 28).copy()
        images[0], images[1] = pixel % 256, pixel // 256
        write_idx(path, images)
    x, y = data.load("mnist", root=tmp_path)
    stream = data.permuted_stream("mnist", n_tasks=3, seed=5, root=tmp_path)
    assert stream.scenario == "domain" and len(stream) == 3
    assert torch.equal(stream[0].train_x, x)  # task 1 is the original
    for task in stream:
        assert torch.equal(task.train_y, y) and task.classes == tuple(range(10))
        moved = task.train_x.flatten(1).long()
        source = moved[0] + 256 * moved[1]  # pixel position each output pixel was taken from
        assert sorted(source.tolist()) == list(range(784))
        assert torch.equal(moved, x.flatten(1).long()[:, source])  # every train image moved the same way
        test = task.test_x.flatten(1).long()
        assert torch.equal(test[0] + 256 * test[1], source)  # ... and the test images too
    assert not torch.equal(stream[1].train_x, stream[2].train_x)
    again = data.permuted_stream("mnist", n_tasks=3, seed=5, root=tmp_path)
    assert torch.equal(again[2].test_x, stream[2].test_x)


def test_batch_indices_are_seeded_and_in_range():
    a = data.batch_indices(50, 16, torch.Generator().manual_seed(1), "cpu")
    b = data.batch_indices(50, 16, torch.Generator().manual_seed(1), "cpu")
    assert torch.equal(a, b) and a.shape == (16,) and a.min() >= 0 and a.max() < 50
    assert data.batch_indices(5, 16, torch.Generator(), "cpu").shape == (5,)


def test_without_root_or_env_a_shared_copy_beside_the_clone_is_found(tmp_path, monkeypatch):
    monkeypatch.delenv("GRLIB_DATA", raising=False)
    monkeypatch.setattr(config, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setattr(config, "SHARED_DATA", tmp_path / "shared" / "data")
    assert data.find_root("mnist", True) == tmp_path / "repo" / "data"  # nowhere: the repo's data/ (download there)
    write_mnist_like(tmp_path / "shared" / "data", "MNIST")
    assert data.find_root("mnist", True) == tmp_path / "shared" / "data"
    write_mnist_like(tmp_path / "repo" / "data", "MNIST")
    assert data.find_root("mnist", True) == tmp_path / "repo" / "data"  # the repo's own copy wins
    monkeypatch.setenv("GRLIB_DATA", str(tmp_path / "elsewhere"))
    assert data.find_root("mnist", True) == tmp_path / "elsewhere"


def test_domain_stream_shares_one_label_space_and_pads_grey_to_colour(tmp_path, monkeypatch):
    import hashlib

    import scipy.io
    write_mnist_like(tmp_path, "MNIST")
    write_mnist_like(tmp_path, "FashionMNIST", seed=4)
    grey = data.domain_stream(["mnist", "fashion-mnist"], root=tmp_path)
    assert grey.scenario == "domain" and [t.name for t in grey] == ["mnist", "fashion-mnist"]
    assert grey.image_shape == (1, 28, 28) and grey[0].classes == grey[1].classes == tuple(range(10))

    images = np.zeros((32, 32, 3, 3), dtype=np.uint8)
    for split in ("train", "test"):
        path = tmp_path / "SVHN" / f"{split}_32x32.mat"
        path.parent.mkdir(exist_ok=True)
        scipy.io.savemat(path, {"X": images, "y": np.array([[1], [2], [10]], dtype=np.uint8)})
        md5 = hashlib.md5(path.read_bytes()).hexdigest()
        monkeypatch.setitem(torchvision.datasets.SVHN.split_list, split, ["", f"{split}_32x32.mat", md5])
    colour = data.domain_stream(["mnist", "svhn"], root=tmp_path)
    assert colour.image_shape == (3, 32, 32) and colour[1].train_x.shape == (3, 3, 32, 32)
    mnist_x, _ = data.load("mnist", root=tmp_path)
    padded = colour[0].train_x
    assert torch.equal(padded[:, 0, 2:30, 2:30], mnist_x[:, 0]) and torch.equal(padded[:, 0], padded[:, 2])
    assert padded[:, :, :2].sum() == 0  # the border is black


def test_a_shared_copy_reached_through_a_symbolic_link_is_checked_and_read(tmp_path, monkeypatch):
    """As on a lab machine where ../shared beside the clone is a link to the real folder."""
    arrays = write_mnist_like(tmp_path / "real" / "data", "MNIST")
    (tmp_path / "shared").symlink_to(tmp_path / "real", target_is_directory=True)
    monkeypatch.delenv("GRLIB_DATA", raising=False)
    monkeypatch.setattr(config, "REPO_ROOT", tmp_path / "repo")
    monkeypatch.setattr(config, "SHARED_DATA", tmp_path / "shared" / "data")
    x, y = data.load("mnist", train=True, download=False)
    assert torch.equal(y, torch.as_tensor(arrays["train"][1]))
