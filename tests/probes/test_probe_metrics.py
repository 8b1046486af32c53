"""The fidelity metrics against answers known by construction."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sglab.probes.metrics import compare, cosine, fidelity_metrics, norm_ratio, per_sample_cosine, relative_error, sign_agreement


def gradient(seed=0, shape=(8, 5)):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def test_identical_gradients_agree_perfectly():
    g = gradient()
    metrics = compare(g, g.clone())
    assert metrics["cosine"] == pytest.approx(1, abs=1e-12)
    assert metrics["cosine_mean"] == pytest.approx(1, abs=1e-12)
    assert metrics["cosine_p10"] == pytest.approx(1, abs=1e-12) and metrics["cosine_p90"] == pytest.approx(1, abs=1e-12)
    assert metrics["rel_error"] == 0 and metrics["norm_ratio"] == pytest.approx(1, abs=1e-12)
    assert metrics["sign_agreement"] == 1


def test_opposite_gradients_have_cosine_minus_one_and_no_sign_in_common():
    g = gradient()
    metrics = compare(-g, g)
    assert metrics["cosine"] == pytest.approx(-1, abs=1e-12) and metrics["cosine_p90"] == pytest.approx(-1, abs=1e-12)
    assert metrics["rel_error"] == pytest.approx(2) and metrics["sign_agreement"] == 0


def test_orthogonal_gradients_have_cosine_zero():
    a = torch.tensor([[1.0, 0.0, 2.0], [0.0, 3.0, 0.0]])
    b = torch.tensor([[0.0, 5.0, 0.0], [4.0, 0.0, -1.0]])
    assert cosine(a, b) == 0
    assert per_sample_cosine(a, b).tolist() == [0.0, 0.0]
    assert relative_error(a, b) == pytest.approx(math.sqrt(1 + 4 + 9 + 42) / math.sqrt(42))


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(1e-3, 1e3), seed=st.integers(0, 1000))
def test_a_scaled_gradient_has_cosine_one_and_norm_ratio_the_scale(scale, seed):
    g = gradient(seed)
    metrics = compare(scale * g, g)
    assert metrics["cosine"] == pytest.approx(1, abs=1e-9) and metrics["cosine_p10"] == pytest.approx(1, abs=1e-9)
    assert metrics["norm_ratio"] == pytest.approx(scale, rel=1e-6)
    assert metrics["rel_error"] == pytest.approx(abs(scale - 1), abs=1e-6 * max(1.0, scale))  # float32 rounding of s·g
    assert metrics["sign_agreement"] == 1
    assert compare(-scale * g, g)["sign_agreement"] == 0


def test_per_sample_quantiles_read_each_row():
    truth = torch.ones(10, 4)
    estimate = truth.clone()
    estimate[:5] *= -1  # half the samples point the wrong way
    metrics = compare(estimate, truth)
    assert metrics["cosine"] == pytest.approx(0, abs=1e-12) and metrics["cosine_mean"] == pytest.approx(0, abs=1e-12)
    assert metrics["cosine_p10"] == pytest.approx(-1) and metrics["cosine_p90"] == pytest.approx(1)


def test_a_zero_gradient_has_no_direction():
    g, zero = gradient(), torch.zeros(8, 5)
    assert math.isnan(cosine(zero, g)) and math.isnan(compare(zero, g)["cosine_mean"])
    assert math.isnan(relative_error(g, zero)) and math.isnan(norm_ratio(g, zero))
    assert relative_error(zero, g) == 1 and norm_ratio(zero, g) == 0 and sign_agreement(zero, zero) == 1


def test_shapes_must_match():
    with pytest.raises(ValueError, match=r"shape \(8, 5\) with one of shape \(5, 8\)"):
        cosine(gradient(), gradient(shape=(5, 8)))


def test_a_record_names_its_quantities():
    g = gradient()
    record = {"true": g, "synthetic": 2 * g, "target": g, "prediction": 2 * g,
              "update_bprop": torch.arange(1.0, 4.0), "update_dni": torch.arange(1.0, 4.0)}
    metrics = fidelity_metrics(record)
    assert metrics["true_norm"] == pytest.approx(float(g.norm()))
    assert metrics["synthetic_norm_ratio"] == pytest.approx(2) and metrics["target_rel_error"] == 0
    assert metrics["regression_norm_ratio"] == pytest.approx(2)
    assert metrics["update_cosine"] == pytest.approx(1) and metrics["update_norm"] == pytest.approx(math.sqrt(14))
    assert "update_cosine_mean" not in metrics  # a parameter vector has no samples
    assert set(fidelity_metrics({"true": g, "update_bprop": g.flatten()})) == {"true_norm", "update_norm"}
