"""``sglab data``: fetch the published dataset files, and show what a data directory holds."""

from __future__ import annotations

import argparse
import json

from sglab.data.dataset import DataError
from sglab.data.download import download_dataset, file_status, get_spec
from sglab.data.loader import load_dataset
from sglab.data.sources import (
    DATA_DIR_ENV,
    DATASETS,
    DEFAULT_DATA_DIR,
    resolve_data_dir,
)

_DATA_DIR_HELP = f"data directory (default: ${DATA_DIR_ENV}, else {DEFAULT_DATA_DIR})"


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``sglab data {download,info}`` to the top-level parser."""
    parser = subparsers.add_parser(
        "data",
        help="download datasets and check the data directory",
        description="Download MNIST / CIFAR-10 (checked against published sha256) and show "
        "what a data directory holds. 'embedded' needs no files.",
    )
    parser.set_defaults(func=lambda args: _print_help(parser))
    actions = parser.add_subparsers(dest="action", metavar="ACTION")

    downloadable = [name for name, spec in DATASETS.items() if spec.files]
    get = actions.add_parser("download", help="fetch and verify a dataset's published files")
    get.add_argument("name", choices=downloadable)
    get.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    get.add_argument("--quiet", action="store_true", help="no progress bar")
    get.set_defaults(func=_download)

    info = actions.add_parser(
        "info", help="load a dataset and print its sizes, shape, source and file checks"
    )
    info.add_argument("name", help=f"{', '.join(DATASETS)} or a path to an .npz")
    info.add_argument("--data-dir", default=None, help=_DATA_DIR_HELP)
    info.add_argument("--no-verify", action="store_true", help="skip checksums (faster)")
    info.add_argument("--json", action="store_true", help="print one JSON object")
    info.set_defaults(func=_info)


def _print_help(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _download(args: argparse.Namespace) -> int:
    directory = resolve_data_dir(args.data_dir)
    paths = download_dataset(args.name, directory, progress=None if not args.quiet else False)
    for path in paths:
        print(f"ok  {path}  (sha256 verified)")
    print(f"{args.name} is ready in {directory}")
    return 0


def _info(args: argparse.Namespace) -> int:
    name = args.name
    is_path = name.lower().endswith(".npz")
    directory = resolve_data_dir(args.data_dir)
    files = []
    if not is_path and get_spec(name).files:
        files = file_status(name, directory, check=not args.no_verify)
    try:
        dataset = load_dataset(name, data_dir=directory, verify=not args.no_verify)
    except DataError:
        if not args.json:
            _print_files(files)
        raise
    summary = dataset.describe()
    if args.json:
        print(json.dumps({"dataset": summary, "data_dir": str(directory), "files": files}, indent=2))
        return 0
    c, h, w = dataset.input_shape
    print(f"dataset   {summary['name']}  ({summary['num_classes']} classes)")
    print(f"source    {summary['source']}")
    print(f"data dir  {directory}")
    print(f"shape     ({c}, {h}, {w}) {summary['dtype']} in [0, 1]")
    print(f"train     {summary['n_train']:>6}  per class {summary['train_class_counts']}")
    print(f"test      {summary['n_test']:>6}  per class {summary['test_class_counts']}")
    _print_files(files)
    return 0


def _print_files(files: list[dict]) -> None:
    if not files:
        return
    print("files")
    for row in files:
        where = row.get("path") or "-"
        check = row.get("expected_sha256") or row.get("expected_md5")
        kind = "sha256" if row.get("expected_sha256") else "md5"
        suffix = f"  (expected {kind} {check})" if check and row["status"] != "ok" else ""
        print(f"  {row['status']:<17} {row['file']:<40} {where}{suffix}")
