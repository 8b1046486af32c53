"""Datasets for sglab: MNIST, CIFAR-10, any ``.npz``, and an embedded MNIST subset that works offline.

>>> from sglab.data import load_dataset
>>> d = load_dataset("embedded")          # 4,000 / 1,000 real MNIST digits, no download
>>> d.x_train.shape, d.x_train.dtype      # ((4000, 1, 28, 28), dtype('float32')), values in [0, 1]

Files are looked up in the data directory (``--data-dir``, ``$SGLAB_DATA_DIR`` or
``~/.cache/sglab/data``); ``download=True`` or ``sglab data download NAME`` fetches them.
See ``docs/data.md``.
"""

from sglab.data.dataset import DataError, Dataset
from sglab.data.download import download_dataset, file_status
from sglab.data.loader import load_dataset
from sglab.data.sources import DATA_DIR_ENV, DATASETS, DatasetSpec, resolve_data_dir

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DataError",
    "Dataset",
    "DatasetSpec",
    "download_dataset",
    "file_status",
    "load_dataset",
    "resolve_data_dir",
]
