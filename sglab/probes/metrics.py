"""Fidelity metrics: how close an estimate ``a`` of a gradient is to the true one, ``b``.

Pure functions on tensors whose first dimension is the batch (a parameter gradient is one flat
vector and has no per-sample view). Everything is computed in float64. A metric that divides by
a zero norm is NaN: a zero-initialised synthesizer's first ``δ̂`` has no direction.

=====================  ==========================================================================
``cosine``             ``⟨a, b⟩ / (‖a‖ ‖b‖)`` over the whole batch, flattened
``cosine_mean``        the same per sample (one row of the batch each), then the mean over samples
``cosine_p10/50/90``   the 10 %, 50 % and 90 % quantiles of the per-sample cosines
``rel_error``          ``‖a − b‖ / ‖b‖``
``norm_ratio``         ``‖a‖ / ‖b‖``
``sign_agreement``     the fraction of entries with ``sign(a) == sign(b)`` (0 is a sign of its own)
=====================  ==========================================================================

:func:`fidelity_metrics` names them per quantity of a probe's record (see :mod:`sglab.probes`).
"""

from __future__ import annotations

import math
from typing import Mapping

import torch

#: The per-sample cosine quantiles reported, as ``cosine_pNN``.
QUANTILES = (0.1, 0.5, 0.9)


def _flat(t: torch.Tensor) -> torch.Tensor:
    return t.detach().reshape(-1).double()


def _check(a: torch.Tensor, b: torch.Tensor) -> None:
    if a.shape != b.shape:
        raise ValueError(f"cannot compare a gradient of shape {tuple(a.shape)} with one of shape {tuple(b.shape)}")


def _ratio(num: torch.Tensor, den: torch.Tensor) -> float:
    den = float(den)
    return float(num) / den if den > 0 else math.nan


# The private forms take flat float64 tensors, so compare() converts each gradient once.

def _cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return _ratio(a @ b, a.norm() * b.norm())


def _per_sample_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    norms = a.norm(dim=1) * b.norm(dim=1)
    dots = (a * b).sum(dim=1)
    return torch.where(norms > 0, dots / norms.clamp_min(torch.finfo(torch.float64).tiny), torch.nan)


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return _ratio((a - b).norm(), b.norm())


def _norm_ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    return _ratio(a.norm(), b.norm())


def _sign_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((torch.sign(a) == torch.sign(b)).double().mean())


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """The cosine of the angle between ``a`` and ``b``, flattened (NaN if either is zero)."""
    _check(a, b)
    return _cosine(_flat(a), _flat(b))


def per_sample_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """One cosine per sample (row of the batch); NaN where a row of either is zero."""
    _check(a, b)
    return _per_sample_cosine(_flat(a).view(a.shape[0], -1), _flat(b).view(b.shape[0], -1))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a − b‖ / ‖b‖`` (NaN if ``b`` is zero)."""
    _check(a, b)
    return _relative_error(_flat(a), _flat(b))


def norm_ratio(a: torch.Tensor, b: torch.Tensor) -> float:
    """``‖a‖ / ‖b‖`` (NaN if ``b`` is zero)."""
    _check(a, b)
    return _norm_ratio(_flat(a), _flat(b))


def sign_agreement(a: torch.Tensor, b: torch.Tensor) -> float:
    """The fraction of entries where ``a`` and ``b`` have the same sign (zero counting as one)."""
    _check(a, b)
    return _sign_agreement(_flat(a), _flat(b))


def compare(a: torch.Tensor, b: torch.Tensor, per_sample: bool = True) -> dict[str, float]:
    """Every metric of ``a`` against ``b`` by name; ``per_sample`` adds the per-sample cosine's mean and quantiles."""
    _check(a, b)
    fa, fb = _flat(a), _flat(b)
    found = {"cosine": _cosine(fa, fb)}
    if per_sample:
        cosines = _per_sample_cosine(fa.view(a.shape[0], -1), fb.view(b.shape[0], -1))
        found["cosine_mean"] = float(cosines.nanmean())
        for q, value in zip(QUANTILES, torch.nanquantile(cosines, cosines.new_tensor(QUANTILES))):
            found[f"cosine_p{round(100 * q)}"] = float(value)
    found.update(rel_error=_relative_error(fa, fb), norm_ratio=_norm_ratio(fa, fb), sign_agreement=_sign_agreement(fa, fb))
    return found


def fidelity_metrics(record: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The metrics of one interface's probe record, named ``<quantity>_<metric>``.

    ``true_norm`` (‖δ‖) always; ``synthetic_*`` (δ̂ against δ: the whole error), ``target_*``
    (the bootstrapped target against δ: the bootstrapping error) and ``regression_*`` (δ̂ as T
    predicts it against its target: the regression error) where the record has them;
    ``update_norm`` (‖the backprop update‖) and ``update_*`` (the DNI update against it, no
    per-sample view) where it has the updates.
    """
    true = record["true"]
    found = {"true_norm": float(_flat(true).norm())}
    pairs = [("synthetic", "synthetic", "true"), ("target", "target", "true"), ("regression", "prediction", "target")]
    for name, estimate, reference in pairs:
        if estimate in record and reference in record:
            found.update({f"{name}_{k}": v for k, v in compare(record[estimate], record[reference]).items()})
    if "update_bprop" in record:
        found["update_norm"] = float(_flat(record["update_bprop"]).norm())
    if "update_dni" in record:
        found.update({f"update_{k}": v for k, v in compare(record["update_dni"], record["update_bprop"], False).items()})
    return found
