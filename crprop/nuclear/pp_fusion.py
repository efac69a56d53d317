"""Deuteron production by proton-proton fusion, p + p -> d + pi+ (GALPROP's "deuterium fusion source").

GALPROP (from v54 r2504, AWS 2014) adds this term to the secondary source of 2H, with the kinematics of
Meyer (1972, A&AS 7, 417, Sect. 3.1) and the total cross section digitised from Coste et al. (2012, A&A 539,
A88, Fig. B.3). It is written here from those descriptions:

* total cross section sigma_tot(T_p): :data:`PP_FUSION_TOTAL_MB` (29 points, 0.313-4.05 GeV), interpolated the way
  GALPROP does (:func:`pp_fusion_total_barn`, including its quirk);
* angular distribution in the centre-of-momentum frame dsigma/dOmega' proportional to 0.22 + cos^2(theta')
  (Meyer 1972), normalised to sigma_tot; for a deuteron of total kinetic energy E_3 the two-body kinematics fix
  cos(theta') = (E_3 - A) / B, so dsigma/dE_3 = sigma_tot (0.22 + cos^2) / ((0.22 + 1/3) 2 B) and per deuteron
  momentum dsigma/dp_3 = that x beta_3 (barn / GeV);
* source of 2H (same units as the other secondary sources, psi_p as the solver holds it):
  q_d(E_d) = n_H sum_j dsigma/dp(E_d, T_p,j) psi_p(T_p,j) T_p,j[MeV] 1e-24 1e-3 c ln(Ekin_factor),
  a sum over the proton grid in d(ln T) with n_H = n_HI + 2 n_H2 + n_HII.

With ``network_iterations = 1`` it is zero, as in GALPROP: 1H is solved after 2H, so the first pass has no
proton density yet. From the second pass on it uses the previous pass's protons.
"""

from __future__ import annotations

import numpy as np

from crprop.constants import (
    C_CM_S,
    DEUTERON_MASS_FUSION_MEV,
    NUCLEON_MASS_KINEMATICS_MEV,
    PION_PLUS_MASS_FUSION_MEV,
)

PP_FUSION_TOTAL_MB: np.ndarray = np.array([
    (313.073, 0.0164899), (313.186, 0.0264723), (315.180, 0.0655127), (322.109, 0.118792), (331.693, 0.171161),
    (339.002, 0.290065), (354.283, 0.435262), (378.575, 0.627206), (416.661, 0.980264), (479.372, 1.63943),
    (543.459, 2.49409), (598.225, 3.18231), (644.211, 2.93483), (698.922, 2.52967), (752.743, 1.98346),
    (810.742, 1.47329), (873.246, 1.03671), (947.584, 0.700512), (1028.23, 0.486318), (1115.67, 0.366156),
    (1219.57, 0.264728), (1373.30, 0.174121), (1592.92, 0.109981), (1861.32, 0.0723451), (2111.31, 0.0537441),
    (2466.99, 0.0368167), (2777.70, 0.0273500), (3245.59, 0.0189909), (4054.18, 0.0104799),
])
"""(proton kinetic energy MeV, sigma_tot(pp -> d pi+) mb): Coste et al. (2012) Fig. B.3, digitised by N.
Picot-Clemente, the table GALPROP ships."""

PROTON_MASS_GEV = NUCLEON_MASS_KINEMATICS_MEV * 1e-3
DEUTERON_MASS_GEV = DEUTERON_MASS_FUSION_MEV * 1e-3
PION_PLUS_MASS_GEV = PION_PLUS_MASS_FUSION_MEV * 1e-3
"""Rest masses (GeV) of the fusion kinematics: GALPROP's rounded values (crprop.constants)."""

ANGULAR_ISOTROPIC_TERM = 0.22
"""dsigma/dOmega' is proportional to ANGULAR_ISOTROPIC_TERM + cos^2(theta') (Meyer 1972)."""


def pp_fusion_total_barn(ekin_p_gev: np.ndarray) -> np.ndarray:
    """sigma_tot(pp -> d pi+) in barn at proton kinetic energies ``ekin_p_gev`` (GeV); 0 outside
    (E_0, E_{n-2}) of the table, as in GALPROP.

    GALPROP's quirk, kept for its reference runs: for E_{i-1} <= T < E_i it evaluates the straight line through
    table points i and i+1 (extrapolated back to T), not the segment that contains T.
    """
    e = PP_FUSION_TOTAL_MB[:, 0] * 1e-3
    cs = PP_FUSION_TOTAL_MB[:, 1] * 1e-3
    t = np.asarray(ekin_p_gev, dtype=np.float64)
    n = e.size
    inside = (t > e[0]) & (t < e[n - 2])
    # the first i in 1..n-2 with T < E_i (GALPROP's loop ends at i = n-1 when none is)
    i = np.clip(np.searchsorted(e[1 : n - 1], t, side="right") + 1, 1, n - 2)
    value = cs[i] + (cs[i + 1] - cs[i]) * (t - e[i]) / (e[i + 1] - e[i])
    return np.where(inside, value, 0.0)


def pp_fusion_dsigma_dp_barn_per_gev(ekin_d_gev_per_n: np.ndarray, ekin_p_gev: np.ndarray) -> np.ndarray:
    """dsigma/dp_d (barn per GeV/c of deuteron momentum) for deuterons of kinetic energy ``ekin_d_gev_per_n``
    (GeV per nucleon) from protons of ``ekin_p_gev`` (GeV) on protons at rest; broadcast over both arguments.
    Zero below threshold and outside the kinematically allowed deuteron energies."""
    t_p = np.asarray(ekin_p_gev, dtype=np.float64)
    e_d = np.asarray(ekin_d_gev_per_n, dtype=np.float64)
    m1 = m2 = PROTON_MASS_GEV
    m3, m4 = DEUTERON_MASS_GEV, PION_PLUS_MASS_GEV
    gamma1 = (m1 + t_p) / m1
    beta1 = np.sqrt(1.0 - 1.0 / gamma1**2)
    beta_cm = gamma1 * beta1 / (gamma1 + 1.0)  # equal masses
    gamma_cm = 1.0 / np.sqrt(1.0 - beta_cm**2)
    w_cm = (m1 + m2 + t_p) / gamma_cm  # total energy in the centre-of-momentum frame
    open_channel = w_cm >= m3 + m4
    w = np.where(open_channel, w_cm, m3 + m4)
    gamma3 = (w**2 + m3**2 - m4**2) / (2.0 * m3 * w)  # deuteron in the centre-of-momentum frame
    beta3 = np.sqrt(np.clip(1.0 - 1.0 / gamma3**2, 0.0, None))
    a = m3 * (gamma_cm * gamma3 - 1.0)
    b = m3 * gamma_cm * gamma3 * beta_cm * beta3
    e3 = 2.0 * e_d  # deuteron kinetic energy (two nucleons)
    et3 = e3 + m3
    beta_lab = np.sqrt(et3**2 - m3**2) / et3
    with np.errstate(divide="ignore", invalid="ignore"):
        cos = (e3 - a) / b
        value = (pp_fusion_total_barn(t_p) * (ANGULAR_ISOTROPIC_TERM + cos**2)
                 / (ANGULAR_ISOTROPIC_TERM + 1.0 / 3.0) / (2.0 * b) * beta_lab)
    allowed = open_channel & (b > 0) & (cos > -1.0) & (cos < 1.0)
    return np.where(allowed, value, 0.0)


def pp_fusion_kernel(ekin_mev_per_n: np.ndarray) -> np.ndarray:
    """(n_E, n_E) matrix K with q_d[k] = n_H sum_j K[k, j] psi_p[j] on the solver's energy grid (MeV per
    nucleon, logarithmic; the same grid for 1H and 2H). K is in cm^3 s^-1 (dsigma/dp x T_p x c x ln ratio)."""
    e = np.asarray(ekin_mev_per_n, dtype=np.float64)
    log_step = float(np.log(e[1] / e[0]))
    dsdp = pp_fusion_dsigma_dp_barn_per_gev(e[:, None] * 1e-3, e[None, :] * 1e-3)  # barn / GeV
    return dsdp * e[None, :] * 1e-24 * 1e-3 * C_CM_S * log_step
