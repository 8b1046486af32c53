"""Probes in the training loop: a probed run is bitwise the run unprobed, and fidelity.csv is tidy and resumes."""

import math

import pandas as pd
import pytest
from probe_helpers import assert_same_run, tiny_classify, tiny_copy, tiny_two_rnn

from analysis.fidelity import fidelity_summary, load_fidelity, read_fidelity, wide_fidelity
from sglab.methods import method_names
from sglab.probes import FIDELITY_COLUMNS, FidelityLog
from sglab.training import CharLMConfig, train
from sglab.training.run_dir import RunDir
from sglab.training.session import Session


def probed_and_plain(config, tmp_path, **kwargs):
    train(config, tmp_path / "plain", progress=False, **kwargs)
    config.probe_every = 2
    train(config, tmp_path / "probed", progress=False, **kwargs)
    assert_same_run(tmp_path / "plain", tmp_path / "probed")
    assert not (tmp_path / "plain" / "fidelity.csv").exists()
    return pd.read_csv(tmp_path / "probed" / "fidelity.csv")


@pytest.mark.parametrize("method", method_names("train"))
def test_a_probed_classifier_trains_bitwise_as_the_unprobed_one(method, patterns, tmp_path):
    fidelity = probed_and_plain(tiny_classify(method), tmp_path, dataset=patterns)
    assert set(fidelity.interface) == {0, 1} and set(fidelity.step) == set(range(2, 13, 2))


def test_a_probed_cnn_trains_bitwise_as_the_unprobed_one(patterns, tmp_path):
    probed_and_plain(tiny_classify("dni", model="cnn"), tmp_path, dataset=patterns)


@pytest.mark.parametrize("method", ["dni", "dni-aux", "nobprop"])
def test_a_probed_copy_task_trains_bitwise_as_the_unprobed_one(method, tmp_path):
    fidelity = probed_and_plain(tiny_copy(method), tmp_path)
    assert (fidelity.metric == "true_norm").any()


def test_a_probed_language_model_trains_bitwise_as_the_unprobed_one(tmp_path):
    text = tmp_path / "text.txt"
    text.write_text("the quick brown fox jumps over the lazy dog. " * 20)
    config = CharLMConfig(text=str(text), seq_len=8, hidden=16, batch_size=4, steps=6, eval_every=3, truncation=3,
                          lr=3e-3, device="cpu")
    fidelity = probed_and_plain(config, tmp_path)
    assert set(fidelity.interface) == {0, 1, 2}  # 8 ticks, 3 chunks: the window's end (3) is not probed


@pytest.mark.parametrize("method", ["cdni", "dni", "bprop", "nobprop"])
def test_probed_two_rnns_train_bitwise_as_unprobed_ones(method, fake_mnist, tmp_path):
    fidelity = probed_and_plain(tiny_two_rnn(method), tmp_path)
    assert set(fidelity.interface) == {0} and set(fidelity.microbatch) == {0, 1, 2}


def test_fidelity_csv_is_tidy_with_the_metrics_of_every_quantity(patterns, tmp_path):
    train(tiny_classify("dni", probe_every=3), tmp_path, progress=False, dataset=patterns)
    table = pd.read_csv(tmp_path / "fidelity.csv")
    assert tuple(table.columns) == FIDELITY_COLUMNS
    assert not table.duplicated(["step", "interface", "microbatch", "metric"]).any()
    assert set(table.step) == {3, 6, 9, 12} and set(table.interface) == {0, 1} and set(table.microbatch) == {0}
    per_quantity = {"cosine", "cosine_mean", "cosine_p10", "cosine_p50", "cosine_p90", "rel_error", "norm_ratio",
                    "sign_agreement"}
    expected = {"true_norm", "update_norm", "update_cosine", "update_rel_error", "update_norm_ratio",
                "update_sign_agreement"}
    expected |= {f"{q}_{m}" for q in ("synthetic", "target", "regression") for m in per_quantity}
    assert set(table.metric) == expected
    assert table.value.map(math.isfinite).all()  # by step 3 the synthesizers have learnt a direction
    cosines = table[table.metric.str.endswith("cosine")].value
    assert cosines.between(-1 - 1e-9, 1 + 1e-9).all()
    last = table.query("interface == 1 and metric == 'target_cosine'").value  # the last target is the loss's gradient
    assert (last > 1 - 1e-6).all()


def test_bprop_records_the_scales_a_dni_run_is_read_against(patterns, tmp_path):
    train(tiny_classify("bprop", probe_every=4), tmp_path, progress=False, dataset=patterns)
    table = pd.read_csv(tmp_path / "fidelity.csv")
    assert set(table.metric) == {"true_norm", "update_norm"} and (table.value > 0).all()
    assert len(table) == 3 * 2 * 2  # steps 4, 8, 12; two interfaces; two metrics


def test_the_fidelity_log_survives_resume_bitwise(patterns, tmp_path):
    train(tiny_classify("cdni", steps=12, probe_every=2), tmp_path / "full", progress=False, dataset=patterns)
    train(tiny_classify("cdni", steps=6, probe_every=2), tmp_path / "cut", progress=False, dataset=patterns)
    train(tiny_classify("cdni", steps=12, probe_every=2), tmp_path / "cut", progress=False, dataset=patterns, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")
    assert (tmp_path / "full" / "fidelity.csv").read_bytes() == (tmp_path / "cut" / "fidelity.csv").read_bytes()
    full, cut = (RunDir(tmp_path / d).load_checkpoint()["fidelity"] for d in ("full", "cut"))
    pd.testing.assert_frame_equal(pd.DataFrame(full), pd.DataFrame(cut), check_exact=True)  # NaN == NaN here
    assert {row["step"] for row in full} == set(range(2, 13, 2))


def test_a_recurrent_fidelity_log_survives_resume_bitwise(tmp_path):
    train(tiny_copy("dni", steps=12, probe_every=3), tmp_path / "full", progress=False)
    train(tiny_copy("dni", steps=6, probe_every=3), tmp_path / "cut", progress=False)
    train(tiny_copy("dni", steps=12, probe_every=3), tmp_path / "cut", progress=False, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")
    assert (tmp_path / "full" / "fidelity.csv").read_bytes() == (tmp_path / "cut" / "fidelity.csv").read_bytes()


def test_probes_may_be_switched_on_when_resuming(patterns, tmp_path):
    train(tiny_classify("dni"), tmp_path / "full", progress=False, dataset=patterns)
    train(tiny_classify("dni", steps=6), tmp_path / "cut", progress=False, dataset=patterns)
    train(tiny_classify("dni", probe_every=4), tmp_path / "cut", progress=False, dataset=patterns, resume=True)
    assert_same_run(tmp_path / "full", tmp_path / "cut")
    assert set(pd.read_csv(tmp_path / "cut" / "fidelity.csv").step) == {8, 12}


def test_without_probe_every_no_probe_is_made_or_attached(patterns, tmp_path, monkeypatch):
    def refuse(self):
        raise AssertionError("a probe was made although probe_every is None")

    for cls in Session.__subclasses__():
        monkeypatch.setattr(cls, "probe", refuse)
    train(tiny_classify("dni"), tmp_path, progress=False, dataset=patterns)
    assert not (tmp_path / "fidelity.csv").exists()
    observer = object()
    log = FidelityLog(None, None)
    assert log.observer(4, observer) is observer and not log.written
    log.collect(4)
    assert log.rows == []


def test_analysis_reads_runs_into_one_tidy_table(patterns, tmp_path):
    for method in ("dni", "cdni"):
        train(tiny_classify(method, probe_every=6), tmp_path / method, progress=False, dataset=patterns)
    table = load_fidelity([tmp_path / "dni", tmp_path / "cdni"])
    assert list(table.columns) == ["run", *FIDELITY_COLUMNS, "task", "method"]
    assert set(table.run) == {"dni", "cdni"} and set(table.method) == {"dni", "cdni"}
    summary = fidelity_summary(table)
    assert set(summary.steps) == {2} and len(summary) == table.groupby(["run", "interface", "metric"]).ngroups
    wide = wide_fidelity(table)
    assert len(wide) == 2 * 2 * 2 and "synthetic_cosine" in wide.columns
    with pytest.raises(FileNotFoundError, match="train with probe_every set"):
        read_fidelity(tmp_path / "nowhere")
