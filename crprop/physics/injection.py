"""Primary injection spectrum per unit total momentum (GALPROP ``create_transport_arrays``,
inj_spectrum_type = rigidity), and the smooth form of Tsai et al. 2022 (Eq. 2.4).

Naming: the paper's parameters are used throughout, with GALPROP's galdef names as the mapping::

    nu1 = nuc_g_0    (R < R_br1)          R_br1 = nuc_rigid_br0
    nu2 = nuc_g_1    (R_br1 <= R < R_br2)  R_br2 = nuc_rigid_br
    nu3 = nuc_g_2    (R >= R_br2)
    nu4 = nuc_g_3    (R >= R_br3)          R_br3 = nuc_rigid_br2 (1e12 MV in these runs: inactive)

GALPROP's sharp broken power law (``form="galprop"``), normalised to 1 at R = R_br2::

    shape(R) = (R/R_br1)^-nu1 (R_br1/R_br2)^-nu2   R < R_br1
             = (R/R_br2)^-nu2                       R_br1 <= R < R_br2
             = (R/R_br2)^-nu3                       R_br2 <= R < R_br3
             = (R/R_br3)^-nu4 (R_br3/R_br2)^-nu3    R >= R_br3

The smooth form (``form="smooth"``; Tsai et al. 2022, Eq. 2.4), ~ (R/R_br1)^-nu1 for R << R_br1::

    shape(R) = (R/R_br1)^-nu1 [1 + (R/R_br1)^2]^((nu1-nu2)/2) [1 + (R/R_br2)^2]^((nu2-nu3)/2)

Species factor (GALPROP, for every rigidity segment and both forms): ``abundance * A^(nu3-1) * |Z|^-nu3``,
nu3 being galdef nuc_g_2, times ``source_normalization`` (galdef, 1 in these runs). For a single
power law this makes the source per unit momentum per nucleon proportional to abundance * p_n^-nu3.

Layout: rigidity grids of any shape ``S`` and model parameters of shape ``(B,)`` (or scalars) give
``S + (B,)`` (``(n_E, B)`` for a 1-D grid; the model index is last, the solver's layout).
"""

from __future__ import annotations

import numpy as np

from crprop.physics._checks import as_array, as_params

__all__ = [
    "R_BR3_DEFAULT_MV",
    "q_primary",
    "rigidity_shape_galprop",
    "rigidity_shape_smooth",
    "species_factor",
]

R_BR3_DEFAULT_MV: float = 1.0e12
"""Third break rigidity nuc_rigid_br2 of the crml_base / p2 galdefs, MV (above every grid rigidity)."""

_INDEX_LIMIT = 20.0
"""Spectral indices are accepted in (-20, 20); anything larger is certainly an input error."""


def _index(name: str, value: float | np.ndarray) -> np.ndarray:
    return as_array(name, value, -_INDEX_LIMIT, _INDEX_LIMIT, lo_open=True, hi_open=True)


def _rigidity(rigidity_mv: np.ndarray) -> np.ndarray:
    return as_array("rigidity_mv", rigidity_mv, 0.0, lo_open=True)


def _check_order(lower_name: str, lower: np.ndarray, upper_name: str, upper: np.ndarray) -> None:
    if np.any(lower >= upper):
        raise ValueError(f"{lower_name} must be smaller than {upper_name} for every model")


def rigidity_shape_galprop(
    rigidity_mv: np.ndarray,
    nu1: float | np.ndarray,
    nu2: float | np.ndarray,
    nu3: float | np.ndarray,
    r_br1_mv: float | np.ndarray,
    r_br2_mv: float | np.ndarray,
    *,
    nu4: float | np.ndarray | None = None,
    r_br3_mv: float | np.ndarray = R_BR3_DEFAULT_MV,
) -> np.ndarray:
    """GALPROP's sharp broken power law in rigidity (module docstring), dimensionless, 1 at R = R_br2.

    Parameters
    ----------
    rigidity_mv : array of shape S. Rigidity, MV, > 0.
    nu1, nu2, nu3 : scalar or (B,). Indices below R_br1, between the breaks, above R_br2; in (-20, 20).
    r_br1_mv, r_br2_mv : scalar or (B,). Break rigidities, MV, 0 < R_br1 < R_br2.
    nu4 : scalar or (B,), optional. Index above R_br3 (galdef nuc_g_3); defaults to nu3.
    r_br3_mv : scalar or (B,). Third break, MV, > R_br2 (default 1e12 MV).

    Returns
    -------
    Array of shape ``S + (B,)``, dimensionless.
    """
    rig = _rigidity(rigidity_mv)[..., None]
    g0, g1, g2 = _index("nu1", nu1), _index("nu2", nu2), _index("nu3", nu3)
    g3 = g2 if nu4 is None else _index("nu4", nu4)
    r0 = as_array("r_br1_mv", r_br1_mv, 0.0, lo_open=True)
    r1 = as_array("r_br2_mv", r_br2_mv, 0.0, lo_open=True)
    r2 = as_array("r_br3_mv", r_br3_mv, 0.0, lo_open=True)
    g0, g1, g2, g3, r0, r1, r2 = as_params(nu1=g0, nu2=g1, nu3=g2, nu4=g3, r_br1_mv=r0, r_br2_mv=r1,
                                           r_br3_mv=r2)
    _check_order("r_br1_mv", r0, "r_br2_mv", r1)
    _check_order("r_br2_mv", r1, "r_br3_mv", r2)

    with np.errstate(over="ignore", under="ignore"):
        seg0 = np.power(rig / r0, -g0) * np.power(r0 / r1, -g1)
        seg1 = np.power(rig / r1, -g1)
        seg2 = np.power(rig / r1, -g2)
        seg3 = np.power(rig / r2, -g3) * np.power(r2 / r1, -g2)
    return np.where(rig < r0, seg0, np.where(rig < r1, seg1, np.where(rig < r2, seg2, seg3)))


def rigidity_shape_smooth(
    rigidity_mv: np.ndarray,
    nu1: float | np.ndarray,
    nu2: float | np.ndarray,
    nu3: float | np.ndarray,
    r_br1_mv: float | np.ndarray,
    r_br2_mv: float | np.ndarray,
) -> np.ndarray:
    """Smoothly broken power law of Tsai et al. 2022, Eq. 2.4 (without q0), dimensionless.

    ``(R/R_br1)^-nu1 [1 + (R/R_br1)^2]^((nu1-nu2)/2) [1 + (R/R_br2)^2]^((nu2-nu3)/2)``: slope -nu1 well
    below R_br1, -nu2 between, -nu3 well above R_br2.

    Parameters
    ----------
    rigidity_mv : array of shape S. Rigidity, MV, > 0.
    nu1, nu2, nu3 : scalar or (B,). Spectral indices, in (-20, 20).
    r_br1_mv, r_br2_mv : scalar or (B,). Break rigidities, MV, 0 < R_br1 < R_br2.

    Returns
    -------
    Array of shape ``S + (B,)``, dimensionless.
    """
    rig = _rigidity(rigidity_mv)[..., None]
    g1, g2, g3 = _index("nu1", nu1), _index("nu2", nu2), _index("nu3", nu3)
    r1 = as_array("r_br1_mv", r_br1_mv, 0.0, lo_open=True)
    r2 = as_array("r_br2_mv", r_br2_mv, 0.0, lo_open=True)
    g1, g2, g3, r1, r2 = as_params(nu1=g1, nu2=g2, nu3=g3, r_br1_mv=r1, r_br2_mv=r2)
    _check_order("r_br1_mv", r1, "r_br2_mv", r2)
    x1 = rig / r1
    x2 = rig / r2
    with np.errstate(over="ignore", under="ignore"):
        return (
            np.power(x1, -g1)
            * np.power(1.0 + x1 * x1, (g1 - g2) / 2.0)
            * np.power(1.0 + x2 * x2, (g2 - g3) / 2.0)
        )


def species_factor(
    A: int, Z: int, abundance: float, nu3: float | np.ndarray
) -> np.ndarray:
    """GALPROP's per-species factor ``abundance * A^(nu3-1) * |Z|^-nu3`` (nu3 = galdef nuc_g_2).

    Parameters
    ----------
    A : mass number, >= 1.
    Z : charge number, nonzero (|Z| is used).
    abundance : source abundance (galdef iso_abundance), >= 0.
    nu3 : scalar or (B,). Index nuc_g_2, in (-20, 20).

    Returns
    -------
    (B,) array, dimensionless (B = 1 for a scalar nu3).
    """
    a = float(as_array("A", A, 1.0, ndim=0))
    z = float(as_array("Z", Z, ndim=0))
    if z == 0.0:
        raise ValueError("Z must be a nonzero charge number")
    ab = float(as_array("abundance", abundance, 0.0, ndim=0))
    (g2,) = as_params(nu3=_index("nu3", nu3))
    return ab * np.power(a, g2 - 1.0) * np.power(abs(z), -g2)


def q_primary(
    rigidity_mv: np.ndarray,
    A: int,
    Z: int,
    abundance: float,
    nu1: float | np.ndarray,
    nu2: float | np.ndarray,
    nu3: float | np.ndarray,
    r_br1_mv: float | np.ndarray,
    r_br2_mv: float | np.ndarray,
    *,
    form: str = "galprop",
    nu4: float | np.ndarray | None = None,
    r_br3_mv: float | np.ndarray = R_BR3_DEFAULT_MV,
    source_normalization: float | np.ndarray = 1.0,
) -> np.ndarray:
    """Primary injection spectrum of one species per unit total momentum (arbitrary units / s).

    ``q = abundance * A^(nu3-1) * |Z|^-nu3 * shape(R) * source_normalization``; the full source is
    Q(r, z, p) = S(r, z) * q (see :mod:`crprop.physics.source`).

    Parameters
    ----------
    rigidity_mv : array of shape S (e.g. ``(n_E,)``). Rigidity of the species, MV, > 0.
    A, Z : mass and charge number of the species.
    abundance : source abundance (galdef iso_abundance), >= 0.
    nu1, nu2, nu3 : scalar or (B,). Injection indices (galdef nuc_g_0, nuc_g_1, nuc_g_2).
    r_br1_mv, r_br2_mv : scalar or (B,). Break rigidities (galdef nuc_rigid_br0, nuc_rigid_br), MV.
    form : ``"galprop"`` (sharp, exactly as GALPROP) or ``"smooth"`` (Tsai et al. 2022 Eq. 2.4).
    nu4, r_br3_mv : fourth segment of the GALPROP form (galdef nuc_g_3, nuc_rigid_br2); ignored by
        the smooth form. nu4 defaults to nu3, r_br3 to 1e12 MV.
    source_normalization : scalar or (B,), >= 0 (galdef source_normalization; q0 of the paper).

    Returns
    -------
    Array of shape ``S + (B,)`` (``(n_E, B)`` for a 1-D grid), per unit total momentum.
    """
    if form == "galprop":
        shape = rigidity_shape_galprop(
            rigidity_mv, nu1, nu2, nu3, r_br1_mv, r_br2_mv, nu4=nu4, r_br3_mv=r_br3_mv
        )
    elif form == "smooth":
        shape = rigidity_shape_smooth(rigidity_mv, nu1, nu2, nu3, r_br1_mv, r_br2_mv)
    else:
        raise ValueError(f"form must be 'galprop' or 'smooth', got {form!r}")
    factor = species_factor(A, Z, abundance, nu3)
    (norm,) = as_params(source_normalization=as_array("source_normalization", source_normalization, 0.0))
    if norm.size not in (1, shape.shape[-1]):
        raise ValueError(f"source_normalization must have length B = {shape.shape[-1]} or be a scalar")
    if factor.size not in (1, shape.shape[-1]):
        raise ValueError(f"nu3 must have length B = {shape.shape[-1]} or be a scalar")
    return shape * factor * norm
