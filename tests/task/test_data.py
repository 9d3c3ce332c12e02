"""Fashion-MNIST reading, the validation split, TensorLoader and the user task contract.

Most tests use tiny idx files written here, so they run without the Debian package;
the ones marked ``needs_fmnist`` check the real files when they are installed.
"""
from __future__ import annotations

import gzip
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

from hwprune.errors import DataError, HwpruneError
from hwprune.task._data import (
    FASHION_MNIST_DIR,
    FASHION_MNIST_MEAN,
    FASHION_MNIST_STD,
    TaskData,
    TensorLoader,
    _stratified_split,
    load_fashion_mnist,
    load_user_task,
    read_idx,
)

torch.set_num_threads(1)

REPO = Path(__file__).resolve().parents[2]
EXAMPLE_TASK = REPO / "examples" / "user_task" / "data.py"
needs_fmnist = pytest.mark.skipif(
    not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").is_file(),
    reason="dataset-fashion-mnist is not installed")


def write_idx(path: Path, magic: int, array: np.ndarray, gz: bool = True) -> None:
    header = np.array([magic, *array.shape], dtype=">i4").tobytes()
    data = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as f:
            f.write(data)
    else:
        path.write_bytes(data)


def _ids(n: int, offset: int) -> np.ndarray:
    """Images whose first two pixels encode a unique id, so splits can be traced."""
    rng = np.random.default_rng(offset)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    ids = np.arange(offset, offset + n)
    images[:, 0, 0] = ids % 256
    images[:, 0, 1] = ids // 256
    return images


@pytest.fixture()
def fake_fmnist(tmp_path: Path) -> Path:
    """200 training images (20 per class) and 50 test images in idx .gz files."""
    labels = np.repeat(np.arange(10), 20)
    np.random.default_rng(0).shuffle(labels)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", 2051, _ids(200, 0))
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", 2049, labels)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", 2051, _ids(50, 1000))
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", 2049, np.arange(50) % 10)
    return tmp_path


def _decode_ids(loader: TensorLoader) -> list[int]:
    raw = loader.images[:, 0, 0, :2].long()
    return (raw[:, 0] + 256 * raw[:, 1]).tolist()


# --------------------------------------------------------------------------- idx reader

def test_read_idx_round_trip_gz_and_plain(tmp_path: Path) -> None:
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    write_idx(tmp_path / "a.gz", 2051, arr)
    write_idx(tmp_path / "b", 2051, arr, gz=False)
    np.testing.assert_array_equal(read_idx(tmp_path / "a.gz", 2051), arr)
    np.testing.assert_array_equal(read_idx(tmp_path / "b", 2051), arr)


def test_read_idx_rejects_wrong_magic(tmp_path: Path) -> None:
    write_idx(tmp_path / "labels.gz", 2049, np.arange(5))
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        read_idx(tmp_path / "labels.gz", 2051)


def test_read_idx_rejects_truncated_and_non_gzip(tmp_path: Path) -> None:
    arr = np.zeros((4, 28, 28), dtype=np.uint8)
    header = np.array([2051, 4, 28, 28], dtype=">i4").tobytes()
    with gzip.open(tmp_path / "short.gz", "wb") as f:
        f.write(header + arr.tobytes()[:-10])
    with pytest.raises(DataError, match="truncated"):
        read_idx(tmp_path / "short.gz", 2051)
    (tmp_path / "junk.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="cannot read idx file"):
        read_idx(tmp_path / "junk.gz", 2051)


# --------------------------------------------------------------------------- missing data

def test_missing_dir_names_apt_package_and_data_flag(tmp_path: Path) -> None:
    with pytest.raises(DataError) as info:
        load_fashion_mnist(tmp_path / "nowhere")
    msg = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in msg
    assert "--data DIR" in msg
    assert str(tmp_path / "nowhere") in msg
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, HwpruneError)


def test_missing_files_are_listed(fake_fmnist: Path) -> None:
    (fake_fmnist / "t10k-labels-idx1-ubyte.gz").unlink()
    (fake_fmnist / "train-images-idx3-ubyte.gz").unlink()
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz"):
        load_fashion_mnist(fake_fmnist, val_size=50)


def test_label_count_mismatch(fake_fmnist: Path) -> None:
    write_idx(fake_fmnist / "t10k-labels-idx1-ubyte.gz", 2049, np.arange(49) % 10)
    with pytest.raises(DataError, match="50 images but 49 labels"):
        load_fashion_mnist(fake_fmnist, val_size=50)


# --------------------------------------------------------------------------- loaders and split

def test_loader_shapes_dtypes_and_labels(fake_fmnist: Path) -> None:
    task = load_fashion_mnist(fake_fmnist, val_size=50, batch_size=32, eval_batch_size=16)
    assert isinstance(task, TaskData)
    assert (task.num_classes, task.input_shape) == (10, (1, 28, 28))
    assert task.meta["train_images"] == 150 and task.meta["val_images"] == 50
    for loader, n, bs in ((task.train, 150, 32), (task.val, 50, 16), (task.test, 50, 16)):
        batches = list(loader)
        assert len(batches) == len(loader) == -(-n // bs)
        assert sum(len(y) for _, y in batches) == n
        x, y = batches[0]
        assert x.shape == (bs, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (bs,) and y.dtype == torch.int64
        assert 0 <= int(y.min()) and int(y.max()) <= 9
    # normalization: (x / 255 - mean) / std, so raw 0 maps to -mean/std
    x, _ = next(iter(task.val))
    raw = task.val.images[:16].float() / 255
    torch.testing.assert_close(x, (raw - FASHION_MNIST_MEAN) / FASHION_MNIST_STD)


def test_val_split_is_disjoint_stratified_and_deterministic(fake_fmnist: Path) -> None:
    a = load_fashion_mnist(fake_fmnist, val_size=50, seed=0)
    b = load_fashion_mnist(fake_fmnist, val_size=50, seed=0)
    c = load_fashion_mnist(fake_fmnist, val_size=50, seed=1)
    train_ids, val_ids = set(_decode_ids(a.train)), set(_decode_ids(a.val))
    assert not train_ids & val_ids
    assert train_ids | val_ids == set(range(200))
    assert _decode_ids(a.val) == _decode_ids(b.val)
    assert _decode_ids(a.val) != _decode_ids(c.val)
    assert np.bincount(a.val.labels.numpy(), minlength=10).tolist() == [5] * 10
    assert set(_decode_ids(a.test)) == set(range(1000, 1050))


def test_stratified_split_quota_sums_exactly() -> None:
    labels = np.array([0] * 7 + [1] * 5 + [2] * 3)
    train, val = _stratified_split(labels, 4, seed=3)
    assert len(val) == 4 and len(train) == 11
    assert not set(train) & set(val)
    assert sorted(np.bincount(labels[val], minlength=3).tolist()) == [1, 1, 2]
    with pytest.raises(ValueError, match="between 1 and 14"):
        _stratified_split(labels, 15, seed=0)


def test_tensor_loader_shuffle_is_seeded() -> None:
    images = torch.arange(20, dtype=torch.uint8).view(20, 1, 1, 1).expand(20, 1, 2, 2).clone()
    labels = torch.arange(20)

    def epochs(seed: int) -> list[list[int]]:
        loader = TensorLoader(images, labels, batch_size=7, shuffle=True, seed=seed)
        return [torch.cat([y for _, y in loader]).tolist() for _ in range(2)]

    first = epochs(0)
    assert first == epochs(0)
    assert first[0] != first[1]                      # a new order each epoch
    assert sorted(first[0]) == list(range(20))       # every image once
    assert first != epochs(1)


def test_tensor_loader_augment_flips_and_shifts_only() -> None:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(1, 256, (64, 1, 8, 8), generator=g, dtype=torch.uint8)
    loader = TensorLoader(images, torch.zeros(64, dtype=torch.long), batch_size=64,
                          augment=True, pad=2)
    x, _ = next(iter(loader))
    pad = torch.nn.functional.pad(images.float() / 255, (2, 2, 2, 2))
    changed = 0
    for i in range(64):
        candidates = []
        for flip in (False, True):
            src = pad[i].flip(2) if flip else pad[i]
            candidates += [src[:, dy:dy + 8, dx:dx + 8] for dy in range(5) for dx in range(5)]
        assert any(torch.equal(x[i], c) for c in candidates)
        changed += not torch.equal(x[i], images[i].float() / 255)
    assert changed > 32


def test_calibration_batches_fixed_and_sized(fake_fmnist: Path) -> None:
    task = load_fashion_mnist(fake_fmnist, val_size=50, batch_size=32)
    batches = task.calibration_batches(70)
    assert sum(len(x) for x, _ in batches) == 70
    assert task.calibration_batches(70) is batches
    again = load_fashion_mnist(fake_fmnist, val_size=50, batch_size=32).calibration_batches(70)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(batches, again))


@needs_fmnist
def test_real_fashion_mnist_split_sizes() -> None:
    task = load_fashion_mnist()
    assert (task.train.num_images, task.val.num_images, task.test.num_images) == (54000, 6000, 10000)
    assert np.bincount(task.val.labels.numpy()).tolist() == [600] * 10
    assert np.bincount(task.test.labels.numpy()).tolist() == [1000] * 10
    x = torch.cat([x for x, _ in task.val])
    assert abs(float(x.mean())) < 0.02 and abs(float(x.std()) - 1) < 0.02


# --------------------------------------------------------------------------- user tasks

def _task_file(tmp_path: Path, body: str, name: str = "task.py") -> str:
    path = tmp_path / name
    path.write_text("import torch\n" + textwrap.dedent(body))
    return str(path)


_GOOD = """
def _batches(n):
    g = torch.Generator().manual_seed(n)
    return [(torch.randn(4, 2, 5, generator=g), torch.tensor([0, 1, 2, 1])) for _ in range(n)]
"""


def test_example_user_task_loads() -> None:
    task = load_user_task(str(EXAMPLE_TASK))
    assert task.input_shape == (3, 32, 32) and task.num_classes == 8
    assert task.test is not None
    x, y = next(iter(task.val))
    assert x.dtype == torch.float32 and y.dtype == torch.int64 and len(x) == len(y)
    assert sum(len(y) for _, y in task.train) == 2048
    assert sum(len(y) for _, y in task.train) == 2048  # re-iterable


def test_user_task_as_module_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pkg = tmp_path / "mytasks"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    _task_file(pkg, _GOOD + "train_loader = lambda: _batches(3)\nval_loader = lambda: _batches(2)\n",
               name="fm.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    task = load_user_task("mytasks.fm")
    assert task.name == "mytasks.fm" and task.test is None and task.input_shape == (2, 5)
    assert len(list(task.train)) == 3


def test_user_task_missing_functions_listed_together(tmp_path: Path) -> None:
    spec = _task_file(tmp_path, "def test_loader():\n    return []\n")
    with pytest.raises(DataError) as info:
        load_user_task(spec)
    msg = str(info.value)
    assert "train_loader() is missing" in msg and "val_loader() is missing" in msg
    assert "(inputs, labels)" in msg


def test_user_task_not_callable(tmp_path: Path) -> None:
    spec = _task_file(tmp_path, _GOOD + "train_loader = _batches(2)\nval_loader = lambda: []\n")
    with pytest.raises(DataError, match="train_loader is a list, not a function"):
        load_user_task(spec)


def test_user_task_missing_file_and_broken_import(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_user_task(str(tmp_path / "nope.py"))
    with pytest.raises(DataError, match="cannot import task module 'no_such_pkg.data'"):
        load_user_task("no_such_pkg.data")
    spec = _task_file(tmp_path, "raise RuntimeError('boom')\n")
    with pytest.raises(DataError, match="RuntimeError: boom"):
        load_user_task(spec)


@pytest.mark.parametrize("val_body, match", [
    ("lambda: 5", "returned int, not an iterable"),
    ("lambda: []", "yielded no batches"),
    ("lambda: [(torch.zeros(2, 3), torch.zeros(2, dtype=torch.long), 1)]", "of length 3"),
    ("lambda: [(torch.zeros(2, 3), torch.zeros(2))]", "1-D integer tensor"),
    ("lambda: [([0.0, 1.0], torch.zeros(2, dtype=torch.long))]", "torch tensors"),
    ("lambda: [(torch.zeros(3, 3), torch.zeros(2, dtype=torch.long))]", "do not match 2 labels"),
])
def test_user_task_bad_batches(tmp_path: Path, val_body: str, match: str) -> None:
    spec = _task_file(tmp_path, _GOOD + f"train_loader = lambda: _batches(2)\nval_loader = {val_body}\n")
    with pytest.raises(DataError, match=match):
        load_user_task(spec)


def test_user_task_generator_loader_is_reiterable(tmp_path: Path) -> None:
    spec = _task_file(tmp_path, _GOOD + textwrap.dedent("""
        def train_loader():
            yield from _batches(3)

        def val_loader():
            return _batches(1)
    """))
    task = load_user_task(spec)
    assert [len(list(task.train)) for _ in range(3)] == [3, 3, 3]
