"""``load_dataset``: find a dataset's files, check them, read them and build a :class:`Dataset`.

Lookup order in the data directory (and the subfolders its :class:`DatasetSpec` lists):

* ``mnist``: the four IDX files (``.gz`` preferred, uncompressed accepted), then ``mnist.npz``.
* ``cifar10``: the ``cifar-10-batches-py/`` folder, then ``cifar-10-python.tar.gz``, then
  ``cifar10.npz``.

Checksums: a file under its published name (``*-ubyte.gz``, ``cifar-10-python.tar.gz``, the
unpacked CIFAR batches) is compared with the published size and checksum when ``verify`` is
True (the default), because for those the right answer is known and a mismatch means a damaged
download. Uncompressed IDX files and ``.npz`` files have no published checksum; they are checked
structurally instead (IDX header against payload size, array shapes, label ranges).
"""

from __future__ import annotations

from pathlib import Path

from sglab.data import cifar, embedded, idx
from sglab.data.dataset import DataError, Dataset, build_dataset
from sglab.data.download import fetch, get_spec, verify_file, verify_md5
from sglab.data.npz import read_npz
from sglab.data.sources import (
    CIFAR10_ARCHIVE,
    CIFAR10_BATCH_MD5,
    CIFAR10_FOLDER,
    DATASETS,
    MNIST_FILES,
    DatasetSpec,
    RemoteFile,
    resolve_data_dir,
)


def load_dataset(
    name_or_path: str | Path,
    data_dir: str | Path | None = None,
    download: bool = False,
    limit_train: int | None = None,
    limit_test: int | None = None,
    *,
    validation: float = 0.0,
    verify: bool = True,
) -> Dataset:
    """Load ``"embedded"``, ``"mnist"``, ``"cifar10"`` or an ``.npz`` path as a :class:`Dataset`.

    - ``data_dir``: where to look (default :func:`resolve_data_dir`: ``$SGLAB_DATA_DIR`` or
      ``~/.cache/sglab/data``).
    - ``download``: fetch published files that are damaged, or missing with no ``.npz`` to
      stand in; ignored for ``embedded`` and ``.npz`` paths.
    - ``limit_train`` / ``limit_test``: keep that many examples, a stratified subset made of the
      first examples of each class (see :func:`sglab.data.dataset.stratified_take`).
    - ``validation``: fraction of the training set (stratified, the last examples of each
      class) moved to ``x_val`` / ``y_val`` before ``limit_train`` applies.
    - ``verify``: check files under a published name against the published checksums.

    Raises :class:`DataError` (a :class:`sglab.errors.SglabError`) naming the file and the fix
    when anything is missing, truncated, corrupt or offline.
    """
    text = str(name_or_path)
    options = dict(validation=validation, limit_train=limit_train, limit_test=limit_test)
    if text.lower().endswith(".npz"):
        path = _find_npz(text, data_dir)
        raw = read_npz(path)
        return build_dataset(path.stem, str(path), **raw, num_classes=None, **options)

    spec = get_spec(text)
    if spec.name == "embedded":
        raw, source = embedded.read_embedded(), embedded.SOURCE
    else:
        directory = resolve_data_dir(data_dir)
        reader = _load_mnist if spec.name == "mnist" else _load_cifar10
        raw, source = reader(spec, directory, download, verify)
    dataset = build_dataset(spec.name, source, **raw, num_classes=spec.num_classes, **options)
    if dataset.input_shape != spec.input_shape:
        raise DataError(
            f"{source}: images have shape {dataset.input_shape} but {spec.name} images are "
            f"{spec.input_shape}; is this the right file?"
        )
    return dataset


def _find_npz(text: str, data_dir: str | Path | None) -> Path:
    path = Path(text).expanduser()
    if path.is_file():
        return path
    # a bare file name may also mean "the one in the data directory"
    in_dir = resolve_data_dir(data_dir) / path
    if not path.is_absolute() and in_dir.is_file():
        return in_dir
    raise DataError(
        f"{path}: file not found. Give the path of an .npz holding x_train, y_train, x_test, "
        f"y_test, or a dataset name ({', '.join(DATASETS)})"
    )


def _first_file(spec: DatasetSpec, directory: Path, filename: str) -> Path | None:
    return next((p for p in spec.candidates(directory, filename) if p.is_file()), None)


def _read_checked(path: Path, reader, spec: DatasetSpec, directory: Path):
    """Run a parser and add the fix to its error, so every parse failure says what to do."""
    try:
        return reader(path)
    except DataError as err:
        raise DataError(f"{err}. To fix: delete it and {spec.instructions(directory)}.") from err


def _missing(spec: DatasetSpec, directory: Path, wanted: list[str], found: list[Path]) -> DataError:
    where = ", ".join(str(p) for p in spec.candidates(directory, "")) or str(directory)
    have = f" (found only {', '.join(str(p) for p in found)})" if found else ""
    return DataError(
        f"{spec.name} not found in {directory}: looked for {', '.join(wanted)} in {where}{have}. "
        f"To fix: {spec.instructions(directory)}."
    )


# ----------------------------------------------------------------------------------------- MNIST

def _locate_idx(spec: DatasetSpec, directory: Path, remote: RemoteFile) -> Path | None:
    """The published ``.gz`` if present, else the same file uncompressed (name without .gz)."""
    return _first_file(spec, directory, remote.name) or _first_file(
        spec, directory, remote.name.removesuffix(".gz")
    )


def _is_published_name(path: Path, remote: RemoteFile) -> bool:
    return path.name == remote.name


def _load_mnist(spec: DatasetSpec, directory: Path, download: bool, verify: bool):
    located = {key: _locate_idx(spec, directory, r) for key, r in MNIST_FILES.items()}
    npz = _first_file(spec, directory, spec.npz_name)
    if download:
        # fetch only what is needed: a damaged published file, or a missing one unless the
        # .npz can stand in (so download=True still works offline next to a usable mnist.npz)
        for key, remote in MNIST_FILES.items():
            path = located[key]
            damaged = path is not None and _is_published_name(path, remote) and not _verifies(
                path, remote, spec, directory
            )
            if damaged or (path is None and npz is None):
                located[key] = fetch(remote, directory, spec)

    if all(located.values()):
        arrays = {}
        for key, path in located.items():
            remote = MNIST_FILES[key]
            if verify and _is_published_name(path, remote):
                verify_file(path, remote, spec, directory)
            arrays[key] = _read_checked(path, idx.read_idx, spec, directory)
        for part in ("train", "test"):
            images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
            if images.ndim != 3 or labels.ndim != 1:
                raise DataError(
                    f"{located[f'{part}_images']} / {located[f'{part}_labels']}: expected images "
                    f"(N, 28, 28) and labels (N,), got {images.shape} and {labels.shape}; "
                    "are the image and label files swapped?"
                )
        source = str(Path(located["train_images"]).parent)
        return {
            "x_train": arrays["train_images"], "y_train": arrays["train_labels"],
            "x_test": arrays["test_images"], "y_test": arrays["test_labels"],
        }, source

    if npz is not None:
        return _read_checked(npz, read_npz, spec, directory), str(npz)
    wanted = [r.name for r in MNIST_FILES.values()] + [spec.npz_name]
    raise _missing(spec, directory, wanted, [p for p in located.values() if p is not None])


def _verifies(path: Path, remote: RemoteFile, spec: DatasetSpec, directory: Path) -> bool:
    try:
        verify_file(path, remote, spec, directory)
    except DataError:
        return False
    return True


# -------------------------------------------------------------------------------------- CIFAR-10

def _load_cifar10(spec: DatasetSpec, directory: Path, download: bool, verify: bool):
    folder = next(
        (p for p in spec.candidates(directory, CIFAR10_FOLDER) if (p / "data_batch_1").is_file()),
        None,
    )
    if folder is not None:
        if verify:
            for batch, md5 in CIFAR10_BATCH_MD5.items():
                if (folder / batch).is_file():  # a missing batch is reported by read_folder
                    verify_md5(folder / batch, md5, spec, directory)
        return _read_checked(folder, cifar.read_folder, spec, directory), str(folder)

    archive = _first_file(spec, directory, CIFAR10_ARCHIVE.name)
    npz = _first_file(spec, directory, spec.npz_name)
    if download:
        damaged = archive is not None and not _verifies(archive, CIFAR10_ARCHIVE, spec, directory)
        if damaged or (archive is None and npz is None):
            archive = fetch(CIFAR10_ARCHIVE, directory, spec)
    if archive is not None:
        if verify:
            verify_file(archive, CIFAR10_ARCHIVE, spec, directory)
        return _read_checked(archive, cifar.read_archive, spec, directory), str(archive)

    if npz is not None:
        return _read_checked(npz, read_npz, spec, directory), str(npz)
    raise _missing(spec, directory, [f"{CIFAR10_FOLDER}/", CIFAR10_ARCHIVE.name, spec.npz_name], [])
