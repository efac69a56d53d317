"""Synthetic mock stores (crnet.store schema) whose spectra are a simple analytic map of the parameters.

The map has a known inverse: every parameter leaves its own imprint on the Li, Be, B, C, O spectra
(x = log10(E / GeV/n); b1, b2 = log10 of the breaks in GeV/n, R/2 with R in GV):

* C: a smoothly broken power law with slopes nu1, nu2, nu3 at b1, b2, steepened by delta above ~1 GeV/n
  and bent at low energy by eta log10(beta);
* O = C x (1 + markers at the two breaks), so that the breaks stay visible when nu1 ~ nu2 or nu2 ~ nu3;
* B/C falls with D0 and delta, rises with z_h, has a reacceleration bump ~ v_A near 2 GeV/n;
* Be/B rises with z_h at low energy (the 10Be clock), Li/B has its own v_A bump and an eta term.

Isotopes split each element by fixed fractions; the store's chi2 is a quadratic bowl in the box-scaled
parameters (so that confidence regions are ellipsoids), q_c and the ratios are random.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crnet.features import TargetTransform, paper_energy_grid
from crnet.store import NORM_NAMES, MockStore, RecordBatch, StoreMeta

ELEMENTS: tuple[str, ...] = ("H", "Li", "Be", "B", "C", "N", "O", "Ne", "Mg", "Si")
ISOTOPES: tuple[tuple[str, str, float], ...] = (
    ("1H", "H", 1.0), ("6Li", "Li", 0.5), ("7Li", "Li", 0.5), ("7Be", "Be", 0.55), ("9Be", "Be", 0.35),
    ("10Be", "Be", 0.10), ("10B", "B", 0.3), ("11B", "B", 0.7), ("12C", "C", 0.95), ("13C", "C", 0.05),
    ("14N", "N", 0.5), ("15N", "N", 0.5), ("16O", "O", 1.0), ("20Ne", "Ne", 1.0), ("24Mg", "Mg", 1.0),
    ("28Si", "Si", 1.0),
)
"""(label, element, fraction of the element) of the synthetic isotopes."""

SPECIES: tuple[str, ...] = ELEMENTS + tuple(label for label, _, _ in ISOTOPES)

BOWL_CENTRE = np.array([0.4, 0.5, 0.55, 0.5, 0.4, 0.6, 0.45, 0.5, 0.5, 0.5])
"""Minimum of the synthetic chi2 in box-scaled parameters."""

BOWL_CURVATURE = 70.0
"""chi2 = CHI2_MIN + BOWL_CURVATURE * |u - centre|^2 (u in [0, 1]^10)."""

CHI2_MIN = 350.0


def _softplus(t: np.ndarray) -> np.ndarray:
    return np.logaddexp(0.0, t)


def sample_params(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 10) physical parameters uniform in the box-scaled space (log-uniform breaks)."""
    return TargetTransform().inverse(rng.random((n, 10)))


def analytic_log10_fluxes(params: np.ndarray, energies: np.ndarray) -> dict[str, np.ndarray]:
    """log10 of the element fluxes (n, n_E), m^-2 s^-1 sr^-1 (GeV/n)^-1, of the analytic map."""
    p = np.asarray(params, dtype=np.float64)
    d0, delta, eta, va, zh, nu1, nu2, nu3, r1, r2 = (p[:, k][:, None] for k in range(10))
    x = np.log10(np.asarray(energies, dtype=np.float64))[None, :]
    b1, b2 = np.log10(r1) - 3.3, np.log10(r2) - 3.3
    w = 0.2

    def primary(xx: np.ndarray) -> np.ndarray:
        return -(nu1 * xx + (nu2 - nu1) * w * _softplus((xx - b1) / w) + (nu3 - nu2) * w * _softplus((xx - b2) / w))

    gamma = 1.0 + 10.0**x / 0.938
    log_beta = 0.5 * np.log10(1.0 - 1.0 / gamma**2)
    steep = delta * 0.5 * _softplus(2.0 * x)
    log_c = primary(x) - primary(np.ones_like(x)) - steep + 0.15 * eta * log_beta
    log_o = log_c + 0.1 + 0.15 * np.tanh((x - b1) / 0.3) + 0.15 * np.tanh((x - b2) / 0.3)
    log_bc = (-0.5 - 0.7 * np.log10(d0 / 5.0) + 0.35 * np.log10(zh / 5.0) - steep
              + 0.004 * va * np.exp(-((x - 0.3) ** 2) / 0.5) - 0.1 * eta * log_beta)
    log_beb = -0.25 + 0.4 * np.log10(zh / 5.0) * np.exp(-((x + 0.5) ** 2) / 1.5) - 0.1 * np.log10(d0 / 5.0)
    log_lib = 0.05 + 0.003 * va * np.exp(-((x + 0.7) ** 2) / 0.6) + 0.05 * eta * log_beta
    log_b = log_c + log_bc
    return {"H": log_c + 2.5, "Li": log_b + log_lib, "Be": log_b + log_beb, "B": log_b, "C": log_c,
            "N": log_c - 0.6, "O": log_o, "Ne": log_o - 0.8, "Mg": log_o - 0.9, "Si": log_o - 1.0}


def synthetic_flux(params: np.ndarray, energies: np.ndarray) -> np.ndarray:
    """(n, n_species, n_E) float64 store-layout flux (elements, then isotopes) of the analytic map."""
    logs = analytic_log10_fluxes(params, energies)
    rows = [10.0 ** logs[el] for el in ELEMENTS] + [frac * 10.0 ** logs[el] for _, el, frac in ISOTOPES]
    return np.stack(rows, axis=1)


def synthetic_chi2(params: np.ndarray) -> np.ndarray:
    """Quadratic bowl around :data:`BOWL_CENTRE` in box-scaled parameters."""
    u = TargetTransform().forward(params)
    return CHI2_MIN + BOWL_CURVATURE * ((u - BOWL_CENTRE) ** 2).sum(axis=1)


def write_synthetic_store(path: Path | str, n: int, seed: int = 0, energies: np.ndarray | None = None,
                          params: np.ndarray | None = None, q_c_range: tuple[float, float] = (0.8, 1.25),
                          n_unconverged: int = 0, batch: int = 1000, dataset: str = "paper") -> np.ndarray:
    """Write a synthetic store of ``n`` records to ``path``; returns the (n, 10) parameters.

    ``params`` overrides the uniform draw; the last ``n_unconverged`` records are marked unconverged.
    """
    rng = np.random.default_rng(seed)
    e = paper_energy_grid() if energies is None else np.asarray(energies, dtype=np.float64)
    p = sample_params(rng, n) if params is None else np.asarray(params, dtype=np.float64)
    norms = np.column_stack([rng.uniform(*q_c_range, n), rng.uniform(0.8, 1.2, (n, len(NORM_NAMES) - 1))])
    chi2 = synthetic_chi2(p)
    converged = np.ones(n, dtype=bool)
    if n_unconverged:
        converged[-n_unconverged:] = False
    meta = StoreMeta(species=list(SPECIES), ekin_gev_per_n=e, grid={"synthetic": True}, cross_sections="none",
                     solver_mode="analytic", backend="numpy", design="uniform", dataset=dataset,
                     temperature=1.0, seed=seed)
    with MockStore.create(path, meta, capacity=n, overwrite=True) as st:
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            m = hi - lo
            st.append_batch(RecordBatch(params=p[lo:hi], norms=norms[lo:hi],
                                        flux=synthetic_flux(p[lo:hi], e).astype(np.float32), chi2=chi2[lo:hi],
                                        chain=np.full(m, -1), step=np.arange(lo, hi), accepted=np.ones(m, bool),
                                        converged=converged[lo:hi], residual=np.zeros(m)))
    return p


# --------------------------------------------- small C, O stores (8 energies) for the store-writing tests
ENERGIES = 1e-3 * 2.0 ** np.arange(8)


def store_meta(**changes) -> StoreMeta:
    base = dict(species=["C", "O"], ekin_gev_per_n=ENERGIES, grid={"dr_kpc": 1.0}, cross_sections="cs",
                solver_mode="fast", backend="numpy", design="mcmc", dataset="paper", temperature=10.0, seed=5)
    return StoreMeta(**{**base, **changes})


def record_batch(start: int, n: int, chain: int) -> RecordBatch:
    rng = np.random.default_rng(start + 100 * chain)
    params = np.tile([4.0, 0.45, -1.0, 20.0, 4.0, 1.0, 2.3, 2.4, 1e3, 3e5], (n, 1))
    params[:, 1] = rng.uniform(0.2, 1.0, n)
    flux = rng.uniform(1.0, 2.0, (n, 2, ENERGIES.size))
    return RecordBatch(params=params, norms=rng.uniform(0.5, 1.5, (n, 4)), flux=flux,
                       chi2=100.0 + rng.uniform(0, 10, n), chain=np.full(n, chain), step=np.arange(start, start + n),
                       accepted=rng.uniform(size=n) < 0.5, converged=np.ones(n, bool), residual=np.full(n, 1e-7))
