"""Sampler and design settings that failed silently or with the wrong advice (review by helper-111, session 23)."""

from __future__ import annotations

import numpy as np
import pytest

from crnet.scan.designs import gaussian_design, prior_box
from crnet.scan.sampler import AdaptiveMetropolis, SamplerConfig


@pytest.mark.parametrize("field", ["scale_gain", "regularization", "max_log_scale"])
def test_a_nan_sampler_setting_is_refused(field: str) -> None:
    # before: accepted, and every chain froze (log_scale or the proposal covariance NaN, all proposals rejected)
    with pytest.raises(ValueError, match=rf"^SamplerConfig\.{field} must be finite and [>]=? 0, got nan"):
        SamplerConfig(**{field: float("nan")})


def test_a_nan_start_density_is_refused_and_minus_inf_allowed() -> None:
    x0, cov = np.zeros((2, 2)), np.ones(2)
    with pytest.raises(ValueError, match=r"^log_p0 must not be NaN \(chains \[1\]\)"):
        AdaptiveMetropolis(x0, [0.0, np.nan], cov)
    assert AdaptiveMetropolis(x0, [0.0, -np.inf], cov).n_chains == 2


def test_a_centre_on_the_box_face_is_named() -> None:
    lower, upper = prior_box()
    centre = lower.copy()  # every coordinate on its lower face: 2^-10 of the draws land inside, whatever sigma
    centre[0] = 0.5 * (lower[0] + upper[0])
    with pytest.raises(ValueError, match=r"reduce sigma; the centre lies on the prior box's face in \['delta', "):
        gaussian_design(64, centre, 1e-8 * (upper - lower), 0, lower, upper)
    inside = 0.5 * (lower + upper)
    assert gaussian_design(64, inside, 1e-3 * (upper - lower), 0, lower, upper).shape == (64, 10)
