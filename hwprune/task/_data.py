"""Task data: the built-in Fashion-MNIST demo task and the user task contract.

A *task* is what the search trains, calibrates and scores a pruned model on. It is a
:class:`TaskData` holding three re-iterable loaders of ``(inputs, labels)`` batches:

* ``train`` - fine-tuning and BatchNorm recalibration;
* ``val``   - carved from the training set; the search ranks candidates on it;
* ``test``  - held out, read only for the final report, never for a decision.

Built-in: ``load_fashion_mnist()`` reads the four idx files of Fashion-MNIST (Zalando,
MIT licence) as installed by Debian's ``dataset-fashion-mnist`` package. Debian
recompressed the ``.gz`` files, so upstream checksums do not match; the reader
validates the idx magic numbers, the header sizes against the payload, and the
image/label counts against each other instead.

User tasks: ``load_user_task("path/to/data.py")`` or ``load_user_task("pkg.data")``
imports a module that defines ``train_loader()`` and ``val_loader()`` (optionally
``test_loader()``), each returning an iterable of ``(inputs, labels)`` batches, e.g. a
``torch.utils.data.DataLoader``. See ``examples/user_task/data.py``.
"""
from __future__ import annotations

import gzip
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from hwprune._imports import is_path_spec
from hwprune.errors import ConfigError, DataError

__all__ = [
    "FASHION_MNIST_DIR",
    "FASHION_MNIST_MEAN",
    "FASHION_MNIST_STD",
    "FASHION_MNIST_CLASSES",
    "TaskData",
    "TensorLoader",
    "load_fashion_mnist",
    "load_task",
    "load_user_task",
    "read_idx",
]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")

# Mean and std of the 60,000 training pixels scaled to [0, 1], rounded to 4 places
# (exact: 0.28604, 0.35302). The shipped demo weights were trained with these, so a
# change here silently costs the demo model accuracy.
FASHION_MNIST_MEAN = 0.2860
FASHION_MNIST_STD = 0.3530

FASHION_MNIST_CLASSES = (
    "t-shirt/top", "trouser", "pullover", "dress", "coat",
    "sandal", "shirt", "sneaker", "bag", "ankle boot",
)

_FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
_IMAGE_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions
_LABEL_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension

_INSTALL_HINT = ("install it with `sudo apt-get install dataset-fashion-mnist`, or pass "
                 "--data DIR naming a folder with the four Fashion-MNIST idx files "
                 "(train/t10k images-idx3 and labels-idx1, .gz or not)")

Batch = tuple[torch.Tensor, torch.Tensor]


# --------------------------------------------------------------------------- idx files

def read_idx(path: str | os.PathLike, magic: int) -> np.ndarray:
    """Read one idx file (gzip or plain) of unsigned bytes into an array.

    ``magic`` is 2051 for image files (N x rows x cols) and 2049 for label files (N).
    Raises :class:`DataError` on a bad magic number, a truncated or oversized payload,
    or a file that is not gzip/idx at all.
    """
    path = Path(path)
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                buf = f.read()
        else:
            buf = path.read_bytes()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read idx file '{path}': {type(exc).__name__}: {exc}",
                        "the file is damaged; reinstall it or pass --data DIR") from exc
    found = int(np.frombuffer(buf, dtype=">i4", count=1)[0]) if len(buf) >= 4 else None
    if found != magic:
        raise DataError(f"idx file '{path}' has magic number {found}, expected {magic}",
                        "check that image and label files are not swapped or damaged")
    ndim = magic & 0xFF
    header = 4 * (1 + ndim)
    if len(buf) < header:
        raise DataError(f"idx file '{path}' is {len(buf)} bytes, shorter than its header",
                        "the file is truncated or damaged; reinstall it")
    dims = tuple(int(d) for d in np.frombuffer(buf, dtype=">i4", count=ndim, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(buf) != expected:
        raise DataError(f"idx file '{path}' is {len(buf)} bytes, its header "
                        f"{'x'.join(map(str, dims))} says {expected}",
                        "the file is truncated or damaged; reinstall it")
    return np.frombuffer(buf, dtype=np.uint8, offset=header).reshape(dims)


def _find(data_dir: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (data_dir / name).is_file():
            return data_dir / name
    return None


def _read_fashion_mnist(data_dir: Path) -> dict[str, np.ndarray]:
    if not data_dir.is_dir():
        raise DataError(f"Fashion-MNIST folder '{data_dir}' does not exist", _INSTALL_HINT)
    paths = {key: _find(data_dir, stem) for key, stem in _FILES.items()}
    missing = [_FILES[k] + ".gz" for k, p in paths.items() if p is None]
    if missing:
        raise DataError(f"Fashion-MNIST files missing in '{data_dir}': {', '.join(missing)}",
                        _INSTALL_HINT)
    arrays: dict[str, np.ndarray] = {}
    for split in ("train", "test"):
        images = read_idx(paths[f"{split}_images"], _IMAGE_MAGIC)
        labels = read_idx(paths[f"{split}_labels"], _LABEL_MAGIC)
        if images.shape[1:] != (28, 28):
            raise DataError(f"'{paths[f'{split}_images']}' holds "
                            f"{images.shape[1]}x{images.shape[2]} images, expected 28x28")
        if len(images) != len(labels):
            raise DataError(f"Fashion-MNIST {split} split has {len(images)} images but "
                            f"{len(labels)} labels in '{data_dir}'")
        if len(labels) and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
            raise DataError(f"'{paths[f'{split}_labels']}' holds label {int(labels.max())}, "
                            f"expected 0..{len(FASHION_MNIST_CLASSES) - 1}")
        arrays[f"{split}_images"] = images
        arrays[f"{split}_labels"] = labels
    return arrays


# --------------------------------------------------------------------------- loaders

class TensorLoader:
    """Batches over in-memory tensors; re-iterable, each iteration is one epoch.

    Images are stored as they come (uint8 for Fashion-MNIST, a quarter of float32's
    memory) and scaled per batch: ``x / 255`` for uint8, then ``(x - mean) / std``.
    Shuffling and augmentation draw from one generator seeded at construction, so a
    fresh process replays the same sequence of epochs.

    ``augment=True`` applies a random horizontal flip and a random shift of up to
    ``pad`` pixels (zero padding, then a crop), the usual Fashion-MNIST recipe.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, *, batch_size: int = 128,
                 shuffle: bool = False, seed: int = 0, augment: bool = False, pad: int = 2,
                 mean: float = 0.0, std: float = 1.0, drop_last: bool = False) -> None:
        if batch_size <= 0:
            raise ConfigError(f"batch size must be positive, got {batch_size}")
        if images.ndim != 4 or len(images) != len(labels):
            raise DataError(f"need NxCxHxW images and N labels, got images "
                            f"{tuple(images.shape)} and labels {tuple(labels.shape)}")
        self.images = images
        self.labels = labels.long()
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.augment = augment
        self.pad = pad
        self.mean = mean
        self.std = std
        self.drop_last = drop_last
        self._gen = torch.Generator().manual_seed(seed)

    @property
    def num_images(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        n = self.num_images
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        n = self.num_images
        order = torch.randperm(n, generator=self._gen) if self.shuffle else torch.arange(n)
        stop = n - n % self.batch_size if self.drop_last else n
        for start in range(0, stop, self.batch_size):
            idx = order[start:start + self.batch_size]
            x = self.images[idx]
            if self.augment:
                x = self._augment(x)
            yield self._scale(x), self.labels[idx]

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        x = x.float()
        if self.images.dtype == torch.uint8:
            x = x.div_(255.0)
        return x.sub_(self.mean).div_(self.std)

    def _augment(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        flip = torch.rand(b, generator=self._gen) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        if self.pad:
            p = self.pad
            padded = torch.nn.functional.pad(x, (p, p, p, p))  # 0 = background, before scaling
            dy = torch.randint(0, 2 * p + 1, (b,), generator=self._gen)
            dx = torch.randint(0, 2 * p + 1, (b,), generator=self._gen)
            rows = (dy[:, None] + torch.arange(h))[:, :, None]          # b x h x 1
            cols = (dx[:, None] + torch.arange(w))[:, None, :]          # b x 1 x w
            x = padded.permute(0, 2, 3, 1)[torch.arange(b)[:, None, None], rows, cols]
            x = x.permute(0, 3, 1, 2).contiguous()
        return x

    def restarted(self) -> "TensorLoader":
        """A copy restarted at its seed: it yields the batches this loader yielded from
        its construction, in the same order, whatever has been drawn from it since."""
        return TensorLoader(self.images, self.labels, batch_size=self.batch_size,
                            shuffle=self.shuffle, seed=self.seed, augment=self.augment,
                            pad=self.pad, mean=self.mean, std=self.std, drop_last=self.drop_last)

    def subset(self, num_images: int, *, seed: int | None = 0, **overrides: Any) -> "TensorLoader":
        """A loader over ``num_images`` images: a seeded random pick, or the first ones
        when ``seed`` is None. It does not shuffle or augment unless ``overrides`` say so.
        """
        n = min(num_images, self.num_images)
        if seed is None:
            idx = torch.arange(n)
        else:
            idx = torch.randperm(self.num_images, generator=torch.Generator().manual_seed(seed))[:n]
            idx = idx.sort().values
        kwargs = dict(batch_size=self.batch_size, shuffle=False, seed=self.seed, augment=False,
                      pad=self.pad, mean=self.mean, std=self.std, drop_last=False)
        kwargs.update(overrides)
        return TensorLoader(self.images[idx], self.labels[idx], **kwargs)


def _stratified_split(labels: np.ndarray, val_size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val), each sorted; ``val`` holds every class in proportion.

    Class quotas are rounded by largest remainder so they sum to ``val_size`` exactly.
    """
    n = len(labels)
    if not 0 < val_size < n:
        raise ConfigError(f"validation size must be between 1 and {n - 1} images, got {val_size}")
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * val_size / n
    quota = np.floor(exact).astype(np.int64)
    short = val_size - int(quota.sum())
    quota[np.argsort(-(exact - quota), kind="stable")[:short]] += 1
    val_parts = []
    for c, q in zip(classes, quota):
        members = np.flatnonzero(labels == c)
        val_parts.append(rng.permutation(members)[:q])
    val = np.sort(np.concatenate(val_parts))
    mask = np.ones(n, dtype=bool)
    mask[val] = False
    return np.flatnonzero(mask), val


# --------------------------------------------------------------------------- TaskData

@dataclass
class TaskData:
    """The data a search runs on: three re-iterable loaders of ``(inputs, labels)``.

    ``val`` ranks candidates; ``test`` (may be None) is for the final report only.
    ``input_shape`` is one sample's shape (C, H, W); ``meta`` records the source,
    split and normalization so a report can state them.
    """

    name: str
    train: Iterable[Batch]
    val: Iterable[Batch]
    test: Iterable[Batch] | None = None
    num_classes: int | None = None
    input_shape: tuple[int, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    _calibration: dict[int, list[Batch]] = field(default_factory=dict, init=False, repr=False,
                                                 compare=False)

    def calibration_batches(self, num_images: int = 512) -> list[Batch]:
        """A fixed list of training batches holding ``num_images`` images, for
        :func:`~hwprune.task.adaptive_bn`.

        Fixed (drawn once, cached) so every candidate is recalibrated on the same
        images and their scores differ by the pruning, not by the sample.
        """
        if num_images <= 0:
            raise ConfigError(f"calibration needs a positive number of images, got {num_images}")
        if num_images not in self._calibration:
            source: Iterable[Batch] = self.train
            if isinstance(self.train, TensorLoader):
                source = self.train.subset(num_images, seed=self.meta.get("seed", 0))
            batches: list[Batch] = []
            seen = 0
            for x, y in source:
                take = min(len(x), num_images - seen)
                batches.append((x[:take], y[:take]))
                seen += take
                if seen >= num_images:
                    break
            if seen == 0:
                raise DataError(f"task '{self.name}': the training loader yielded no batches")
            self._calibration[num_images] = batches
        return self._calibration[num_images]


def load_fashion_mnist(data_dir: str | os.PathLike | None = None, *, val_size: int = 6000,
                       seed: int = 0, batch_size: int = 128, eval_batch_size: int = 1000,
                       augment: bool = False) -> TaskData:
    """Fashion-MNIST as a :class:`TaskData`: train (minus val) / val / test loaders.

    ``data_dir`` defaults to Debian's ``/usr/share/datasets/fashion-mnist``. The
    validation split is ``val_size`` training images, stratified by class and drawn
    with ``seed``; the same seed gives the same split on every machine. Inputs are
    float32 ``N x 1 x 28 x 28`` normalized with :data:`FASHION_MNIST_MEAN` and
    :data:`FASHION_MNIST_STD`; labels are int64 in 0..9. ``train`` shuffles (and with
    ``augment`` flips and shifts); ``val`` and ``test`` keep file order.

    >>> task = load_fashion_mnist()           # doctest: +SKIP
    >>> len(task.val.labels), len(task.test.labels)
    (6000, 10000)
    """
    root = Path(data_dir) if data_dir is not None else FASHION_MNIST_DIR
    arrays = _read_fashion_mnist(root)
    train_idx, val_idx = _stratified_split(arrays["train_labels"], val_size, seed)
    # np.frombuffer arrays are read-only; copy once so torch owns writable memory.
    images = torch.from_numpy(arrays["train_images"].copy()).unsqueeze(1)
    labels = torch.from_numpy(arrays["train_labels"].astype(np.int64))
    norm = dict(mean=FASHION_MNIST_MEAN, std=FASHION_MNIST_STD)
    ti, vi = torch.from_numpy(train_idx), torch.from_numpy(val_idx)
    train = TensorLoader(images[ti], labels[ti], batch_size=batch_size, shuffle=True,
                         seed=seed, augment=augment, **norm)
    val = TensorLoader(images[vi], labels[vi], batch_size=eval_batch_size, **norm)
    test = TensorLoader(torch.from_numpy(arrays["test_images"].copy()).unsqueeze(1),
                        torch.from_numpy(arrays["test_labels"].astype(np.int64)),
                        batch_size=eval_batch_size, **norm)
    meta = {
        "source": str(root),
        "dataset": "Fashion-MNIST (Zalando Research, MIT licence)",
        "train_images": len(train_idx),
        "val_images": len(val_idx),
        "test_images": test.num_images,
        "val_split": f"stratified, {len(val_idx)} of {len(labels)} training images",
        "seed": seed,
        "normalization": {"scale": "x / 255", **norm},
    }
    return TaskData("fashion-mnist", train, val, test, num_classes=10,
                    input_shape=(1, 28, 28), meta=meta)


# --------------------------------------------------------------------------- user tasks

_CONTRACT = ("a task module defines train_loader() and val_loader() (optionally "
             "test_loader()), each returning an iterable of (inputs, labels) batches, "
             "e.g. a torch DataLoader; see examples/user_task/data.py")


class _Recalling:
    """Makes a one-shot iterator (a generator) re-iterable by calling its factory
    again for each epoch after the first."""

    def __init__(self, factory: Callable[[], Iterable[Batch]],
                 first: Iterable[Batch] | None) -> None:
        self._factory = factory
        self._first: Iterable[Batch] | None = first

    def __iter__(self) -> Iterator[Batch]:
        it, self._first = self._first, None
        return iter(it if it is not None else self._factory())


def _import_task_module(spec: str) -> Any:
    from hwprune._imports import import_user_module

    return import_user_module(spec, "task", DataError, _CONTRACT if is_path_spec(spec) else
                              "give path/to/data.py or an importable package.module")


def _call_loader(spec: str, fn_name: str, fn: Callable[[], Any],
                 check: bool) -> tuple[Iterable[Batch], Batch | None]:
    """Call one loader function; with ``check`` also return its first batch."""
    try:
        loader = fn()
    except Exception as exc:
        raise DataError(f"task '{spec}': {fn_name}() raised {type(exc).__name__}: {exc}") from exc
    try:
        it = iter(loader)
    except TypeError:
        raise DataError(f"task '{spec}': {fn_name}() returned {type(loader).__name__}, "
                        "not an iterable of batches", _CONTRACT) from None
    if it is loader:  # a generator: calling fn() again gives the next epoch
        loader = _Recalling(fn, loader)
    first = None
    if check:
        try:
            first = next(it)
        except StopIteration:
            raise DataError(f"task '{spec}': {fn_name}() yielded no batches") from None
        except Exception as exc:
            raise DataError(f"task '{spec}': iterating {fn_name}() raised "
                            f"{type(exc).__name__}: {exc}") from exc
        _check_batch(spec, fn_name, first)
        if isinstance(loader, _Recalling):
            # the peeked generator lost its first batch; every epoch calls fn() afresh
            loader = _Recalling(fn, None)
    return loader, first


def _check_batch(spec: str, fn_name: str, batch: Any) -> None:
    where = f"task '{spec}': {fn_name}() batches"
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        raise DataError(f"{where} must be (inputs, labels) pairs, got {type(batch).__name__}"
                        + (f" of length {len(batch)}" if isinstance(batch, (tuple, list)) else ""),
                        _CONTRACT)
    x, y = batch
    if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
        raise DataError(f"{where} must hold torch tensors, got ({type(x).__name__}, "
                        f"{type(y).__name__})", "convert with torch.as_tensor in the loader")
    if y.ndim != 1 or y.dtype.is_floating_point or y.dtype == torch.bool:
        raise DataError(f"{where}: labels must be a 1-D integer tensor of class indices, got "
                        f"{y.dtype} of shape {tuple(y.shape)}")
    if x.ndim < 2 or len(x) != len(y):
        raise DataError(f"{where}: inputs of shape {tuple(x.shape)} do not match "
                        f"{len(y)} labels")


def load_user_task(spec: str, *, check: bool = True) -> TaskData:
    """Load a user task from ``path/to/data.py`` or an importable ``package.module``.

    The module must define ``train_loader()`` and ``val_loader()``; ``test_loader()``
    is optional. Each returns an iterable of ``(inputs, labels)`` batches (inputs a
    float tensor N x ..., labels a 1-D integer tensor). A loader is iterated once per
    epoch, so return something re-iterable (a DataLoader, a list); a generator
    works too, the function is then called again for each epoch. Optional module
    attribute ``num_classes`` (int) is copied into the task.

    With ``check`` the first batch of each loader is read and its types and shapes
    checked, so a mistake surfaces here rather than an hour into a search.

    >>> task = load_user_task("examples/user_task/data.py")   # doctest: +SKIP
    """
    module = _import_task_module(spec)
    problems = []
    for name in ("train_loader", "val_loader"):
        attr = getattr(module, name, None)
        if attr is None:
            problems.append(f"{name}() is missing")
        elif not callable(attr):
            problems.append(f"{name} is a {type(attr).__name__}, not a function")
    test_fn = getattr(module, "test_loader", None)
    if test_fn is not None and not callable(test_fn):
        problems.append(f"test_loader is a {type(test_fn).__name__}, not a function")
    if problems:
        raise DataError(f"task '{spec}' does not follow the task contract: "
                        f"{'; '.join(problems)}", _CONTRACT)
    train, _ = _call_loader(spec, "train_loader", module.train_loader, check)
    val, first = _call_loader(spec, "val_loader", module.val_loader, check)
    test = _call_loader(spec, "test_loader", test_fn, check)[0] if test_fn is not None else None
    num_classes = getattr(module, "num_classes", None)
    if num_classes is not None and (not isinstance(num_classes, int) or num_classes < 2):
        raise DataError(f"task '{spec}': num_classes must be an integer >= 2, got {num_classes!r}")
    input_shape = tuple(int(s) for s in first[0].shape[1:]) if first is not None else None
    return TaskData(Path(spec).stem if spec.endswith(".py") else spec, train, val, test,
                    num_classes=num_classes, input_shape=input_shape,
                    meta={"source": spec, "contract": "user task module"})


# --------------------------------------------------------------------------- the task of a run

def load_task(task: str | None, data_dir: str | os.PathLike | None, input_shape: Sequence[int],
              model_id: str) -> TaskData:
    """The task a model of ``input_shape`` (N x C x H x W) is searched on: the user task
    module ``task``, or else Fashion-MNIST (from ``data_dir`` or Debian's package).

    Refuses a task whose samples do not match the model's input, naming both shapes.
    """
    if task:
        data = load_user_task(task)
    else:
        if tuple(input_shape[1:]) != (1, 28, 28):
            raise ConfigError(f"model '{model_id}' takes {'x'.join(map(str, input_shape))} inputs; "
                              "the built-in task is Fashion-MNIST (1x28x28)",
                              "pass --task path/to/data.py defining train_loader() and val_loader()")
        data = load_fashion_mnist(data_dir)
    if data.input_shape is not None and tuple(data.input_shape) != tuple(input_shape[1:]):
        raise ConfigError(f"task '{data.name}' yields {'x'.join(map(str, data.input_shape))} samples, "
                          f"the model takes {'x'.join(map(str, input_shape[1:]))}",
                          "pass a matching --input-shape or task")
    return data
