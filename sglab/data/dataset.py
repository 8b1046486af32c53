"""The in-memory dataset every trainer consumes, and the one place arrays are put in its form.

Every loader (IDX, CIFAR batches, ``.npz``, embedded) hands raw arrays to :func:`build_dataset`,
so layout, scaling, label checks, validation split and subsetting behave identically whatever
the file format was.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sglab.errors import SglabError

#: The most classes :func:`build_dataset` infers from labels (``max + 1``) before calling them mis-encoded.
MAX_INFERRED_CLASSES = 10_000


class DataError(SglabError):
    """A dataset is missing, truncated, corrupt or malformed; the message names the file and fix."""


@dataclass(eq=False)  # field-wise == on arrays is ambiguous; identity is what callers mean
class Dataset:
    """A classification dataset held in memory, ready for training.

    Images are float32 ``(N, C, H, W)`` scaled to ``[0, 1]`` (as in the DNI paper; any further
    normalisation is the model's business); labels are int64 ``(N,)`` in ``0..num_classes-1``.
    ``x_val``/``y_val`` are set only when a ``validation`` fraction was split off the training set.
    """

    name: str
    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    num_classes: int
    source: str
    x_val: np.ndarray | None = field(default=None, repr=False)
    y_val: np.ndarray | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if isinstance(self.num_classes, bool) or not isinstance(self.num_classes, (int, np.integer)) or self.num_classes < 1:
            raise DataError(f"{self.source}: num_classes must be an integer >= 1, got {self.num_classes!r}")
        for part, y in (("train", self.y_train), ("test", self.y_test), ("val", self.y_val)):
            if y is not None and len(y) and not 0 <= int(np.min(y)) <= int(np.max(y)) < self.num_classes:
                raise DataError(f"{self.source}: {part} labels span {int(np.min(y))}..{int(np.max(y))} but the dataset "
                                f"has num_classes={self.num_classes} (labels must be 0..{self.num_classes - 1})")

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Shape of one image, ``(C, H, W)``."""
        return tuple(int(d) for d in self.x_train.shape[1:])  # type: ignore[return-value]

    def describe(self) -> dict[str, Any]:
        """A JSON-ready summary (name, sizes, shape, source, class counts) for ``config.json``."""

        def counts(y: np.ndarray) -> list[int]:
            return np.bincount(y, minlength=self.num_classes).astype(int).tolist()

        summary: dict[str, Any] = {
            "name": self.name,
            "source": self.source,
            "num_classes": int(self.num_classes),
            "input_shape": list(self.input_shape),
            "dtype": str(self.x_train.dtype),
            "n_train": int(len(self.y_train)),
            "n_val": 0 if self.y_val is None else int(len(self.y_val)),
            "n_test": int(len(self.y_test)),
            "train_class_counts": counts(self.y_train),
            "test_class_counts": counts(self.y_test),
        }
        if self.y_val is not None:
            summary["val_class_counts"] = counts(self.y_val)
        return summary


def stratified_take(y: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` examples, class proportions kept: the first examples of each class.

    Deterministic without any random state: each class gets its share of ``n`` (largest
    remainders break ties, lower class first) and contributes its earliest examples, and the
    result is in the original order. A larger ``n`` therefore never drops an example a smaller
    one kept within a class, which keeps quick runs comparable.
    """
    total = len(y)
    if n >= total:
        return np.arange(total)
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n / total)
    quota = np.floor(exact).astype(np.int64)
    short = n - int(quota.sum())
    # stable sort on the negated remainder: ties go to the lower class label
    for k in np.argsort(-(exact - quota), kind="stable")[:short]:
        quota[k] += 1
    chosen = [np.flatnonzero(y == c)[:q] for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(chosen))


def split_validation(y: np.ndarray, fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """``(train_idx, val_idx)``: a stratified ``fraction`` of examples taken from the end.

    Taking the *last* examples of each class leaves the first ones for ``limit_train``, so a
    validation split and a training limit never overlap and never depend on a random seed.
    """
    if not 0.0 <= fraction < 1.0:
        raise DataError(f"validation fraction must be in [0, 1), got {fraction}")
    total = len(y)
    n_val = int(round(fraction * total))
    if fraction > 0:
        n_val = min(max(n_val, 1), total - 1)
    reversed_idx = stratified_take(y[::-1], n_val) if n_val else np.array([], dtype=np.int64)
    val = np.sort(total - 1 - reversed_idx)
    keep = np.ones(total, dtype=bool)
    keep[val] = False
    return np.flatnonzero(keep), val


def as_labels(y: Any, what: str) -> np.ndarray:
    """Labels as int64 ``(N,)``; accepts Keras-style ``(N, 1)`` and integral floats."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise DataError(f"{what}: labels must have shape (N,), got {y.shape}")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise DataError(f"{what}: labels must be whole numbers, got non-integer floats")
    elif y.dtype.kind not in "iu":
        raise DataError(f"{what}: labels must be integers, got dtype {y.dtype}")
    y = y.astype(np.int64)
    if y.size and y.min() < 0:
        raise DataError(f"{what}: labels must be >= 0, found {int(y.min())}")
    return y


def _side(n: int) -> int | None:
    root = math.isqrt(n)
    return root if root * root == n else None


def as_images(x: Any, what: str) -> np.ndarray:
    """Images as float32 ``(N, C, H, W)`` in ``[0, 1]`` from any of the usual layouts.

    Layouts: ``(N, H, W)`` (one channel); ``(N, H, W, C)`` or ``(N, C, H, W)`` with C in 1 or 3
    (channels-last when the last axis is 1 or 3 and the second is not); flat ``(N, D)`` with
    ``D = H*H`` (one channel) or ``3*H*H`` (channel-major, as in the CIFAR python batches).
    Scaling: integers are 0-255 and divided by 255; floats already in ``[0, 1]`` stay, floats
    up to 255 are divided by 255; anything else is an error rather than a silent guess.
    """
    x = np.asarray(x)
    if x.ndim == 2:
        d = x.shape[1]
        if (s := _side(d)) is not None:
            x = x.reshape(len(x), 1, s, s)
        elif d % 3 == 0 and (s := _side(d // 3)) is not None:
            x = x.reshape(len(x), 3, s, s)
        else:
            raise DataError(f"{what}: cannot tell the image shape of flat rows of {d} values")
    elif x.ndim == 3:
        x = x[:, None, :, :]
    elif x.ndim == 4:
        if x.shape[3] in (1, 3) and x.shape[1] not in (1, 3):
            x = x.transpose(0, 3, 1, 2)  # channels-last -> channels-first
        elif x.shape[1] not in (1, 3):
            raise DataError(f"{what}: cannot find the channel axis (1 or 3) in shape {x.shape}")
    else:
        raise DataError(f"{what}: images must be 2-D to 4-D arrays, got shape {x.shape}")

    if x.dtype.kind in "iu":
        if x.size and (x.min() < 0 or x.max() > 255):
            raise DataError(f"{what}: integer pixels must be 0-255, found {x.min()}..{x.max()}")
        out = x.astype(np.float32, order="C")  # a fresh contiguous copy: safe to divide in place
        out /= 255.0
        return out
    if x.dtype.kind == "f":
        out = x.astype(np.float32, order="C", copy=True)
        lo, hi = (float(out.min()), float(out.max())) if out.size else (0.0, 0.0)
        if not (np.isfinite(lo) and np.isfinite(hi)) or lo < 0.0 or hi > 255.0:
            raise DataError(f"{what}: float pixels must lie in [0, 1] or [0, 255], found {lo}..{hi}")
        if hi > 1.0:
            out /= 255.0
        return out
    raise DataError(f"{what}: pixels must be integers or floats, got dtype {x.dtype}")


def _check_limit(value: int | None, what: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise DataError(f"{what} must be a positive integer or None, got {value!r}")


def build_dataset(
    name: str,
    source: str,
    x_train: Any,
    y_train: Any,
    x_test: Any,
    y_test: Any,
    num_classes: int | None = None,
    validation: float = 0.0,
    limit_train: int | None = None,
    limit_test: int | None = None,
) -> Dataset:
    """Check raw arrays, split and subset them, then convert to the :class:`Dataset` form.

    Order: validation is split off the *full* training set (so it does not change with
    ``limit_train``), then ``limit_train`` / ``limit_test`` keep a stratified first-of-each-class
    subset (:func:`stratified_take`). Subsetting happens on the raw arrays, before the float32
    copy, so a quick run on CIFAR-10 never materialises the full float tensor.
    ``num_classes=None`` infers it as ``max label + 1``.
    """
    _check_limit(limit_train, "limit_train")
    _check_limit(limit_test, "limit_test")
    y_train = as_labels(y_train, f"{source}: y_train")
    y_test = as_labels(y_test, f"{source}: y_test")
    for part, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        if len(x) != len(y):
            raise DataError(
                f"{source}: {len(x)} {part} images but {len(y)} {part} labels; "
                "the file is probably truncated or mismatched"
            )
        if len(y) == 0:
            raise DataError(f"{source}: the {part} set is empty")
    largest = int(max(y_train.max(), y_test.max()))
    if num_classes is None:
        if largest >= MAX_INFERRED_CLASSES:
            raise DataError(f"{source}: labels reach {largest}, so the classes inferred as max label + 1 would be "
                            f"{largest + 1}; relabel them 0..K-1 (K at most {MAX_INFERRED_CLASSES:,})")
        num_classes = largest + 1
    elif largest >= num_classes:
        raise DataError(
            f"{source}: label {largest} found but {name} has {num_classes} classes (0..{num_classes - 1})"
        )

    train_idx, val_idx = split_validation(y_train, validation)
    if limit_train is not None:
        train_idx = train_idx[stratified_take(y_train[train_idx], limit_train)]
    test_idx = stratified_take(y_test, limit_test) if limit_test is not None else None

    def pick(x: Any, idx: np.ndarray | None) -> np.ndarray:
        x = np.asarray(x)
        return x if idx is None or len(idx) == len(x) else x[idx]

    x_tr = as_images(pick(x_train, train_idx), f"{source}: x_train")
    x_te = as_images(pick(x_test, test_idx), f"{source}: x_test")
    if x_tr.shape[1:] != x_te.shape[1:]:
        raise DataError(
            f"{source}: train images are {x_tr.shape[1:]} but test images are {x_te.shape[1:]}"
        )
    has_val = len(val_idx) > 0
    return Dataset(
        name=name,
        x_train=x_tr,
        y_train=pick(y_train, train_idx).copy(),
        x_test=x_te,
        y_test=pick(y_test, test_idx).copy(),
        num_classes=int(num_classes),
        source=source,
        x_val=as_images(np.asarray(x_train)[val_idx], f"{source}: x_train") if has_val else None,
        y_val=y_train[val_idx] if has_val else None,
    )
