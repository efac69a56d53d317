"""The README's main job in one call: propagate the paper's galdef, fit the normalisations, plot.

`run_demo` propagates the CR-ML galdef's own parameter point (the galdef the paper's GALPROP mock
runs were made from; the paper publishes no best-fit parameter values) with crprop in `fast` mode,
profiles q_C, xi_Li, xi_Be and q_O/q_C against the paper's data set, and draws Li, Be, B, C, O
(E^2.7-weighted, with the profiled normalisations) and B/C against the measurements, chi^2_tot in
the legend.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from crnet.data import get_dataset
from crnet.likelihood import RATIO_PARAMETERS, Chi2Result, chi2
from crprop.galaxy import GalaxySetup, paper_galdef_path
from crprop.galprop.galdef import read_galdef
from crprop.params import PropagationParams, params_from_galdef
from crprop.propagate import propagate
from crprop.solvers import NonConvergenceWarning
from crprop.spectra import Spectra

PLOT_SPECIES = ("Li", "Be", "B", "C", "O")
ENERGY_WEIGHT = 2.7
"""Fluxes are drawn as E^2.7 J (GeV/n)^1.7 m^-2 s^-1 sr^-1, which flattens the primaries."""


@dataclass
class DemoResult:
    params: PropagationParams
    spectra: Spectra
    fit: Chi2Result
    figure: Path
    wall_s: float


def species_scale(fit: Chi2Result, species: str, model: int = 0) -> float:
    """The profiled factor s_k applied to species k (crnet.likelihood: s = q_C * ratio)."""
    scale = float(fit.q_c[model])
    if species in RATIO_PARAMETERS:
        scale *= float(fit.ratios[RATIO_PARAMETERS[species]][model])
    return scale


def run_demo(out_png: str | Path = "crnet_demo.png", backend: str = "auto", dataset: str = "paper") -> DemoResult:
    """Propagate, fit and plot (see module docstring); returns the pieces and writes ``out_png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = time.perf_counter()
    galdef = read_galdef(paper_galdef_path())
    params = params_from_galdef(galdef, check_prior=False)
    setup = GalaxySetup.from_galdef(galdef, order="parents_first")
    with warnings.catch_warnings():
        warnings.simplefilter("error", NonConvergenceWarning)  # the demo must be converged
        spectra = propagate(setup, params, mode="fast", backend=backend, check_prior=False)
    data = get_dataset(dataset)
    fit = chi2(spectra, data)
    e = spectra.ekin_gev_per_n
    # top-of-atmosphere data are drawn against the model modulated at their period's fitted phi (MV)
    toa = {key: (float(phi[0]), spectra.modulate(float(phi[0]))) for key, phi in fit.phi_by_period.items()}
    fig, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    for ax, sp in zip(axes.ravel(), PLOT_SPECIES, strict=False):
        model = species_scale(fit, sp) * spectra.flux(sp)[0]
        ax.loglog(e, e**ENERGY_WEIGHT * model, color="k",
                  label=f"crprop LIS (scale {species_scale(fit, sp):.3f})")
        for key in dict.fromkeys(data.period_of(b) for b in data.blocks if b.species == sp and not b.lis):
            phi, mod = toa[key]
            ax.loglog(e, e**ENERGY_WEIGHT * species_scale(fit, sp) * mod.flux(sp)[0], color="k", ls="--", lw=1,
                      label=f"crprop, phi = {phi:.0f} MV")
        for block in (b for b in data.blocks if b.species == sp):
            err = np.sqrt(block.stat_hi**2 + block.sys_hi**2)
            x = block.ekin_gev_per_n
            ax.errorbar(x, x**ENERGY_WEIGHT * block.flux, yerr=x**ENERGY_WEIGHT * err, fmt="o", ms=3,
                        label=block.label)
        ax.set_xlim(1e-2, 5e3)
        lows = [float(np.min(b.ekin_gev_per_n**ENERGY_WEIGHT * b.flux)) for b in data.blocks if b.species == sp]
        if lows:  # the modulated model falls steeply below the data: keep the data in view
            ax.set_ylim(bottom=min(lows) / 30)
        ax.set_title(sp)
        ax.set_xlabel("E_kin [GeV/n]")
        ax.set_ylabel("E^2.7 J [m^-2 s^-1 sr^-1 (GeV/n)^1.7]")
        ax.legend(fontsize=7)
    ax = axes.ravel()[-1]
    bc = species_scale(fit, "B") * spectra.flux("B")[0] / (species_scale(fit, "C") * spectra.flux("C")[0])
    ax.semilogx(e, bc, color="k", label=f"crprop LIS, chi2_tot = {fit.chi2_tot[0]:.1f} ({fit.n_points} points)")
    for key in dict.fromkeys(data.period_of(b) for b in data.blocks if b.species in ("B", "C") and not b.lis):
        phi, mod = toa[key]
        ax.semilogx(e, species_scale(fit, "B") * mod.flux("B")[0] / (species_scale(fit, "C") * mod.flux("C")[0]),
                    color="k", ls="--", lw=1, label=f"crprop, phi = {phi:.0f} MV")
    c_blocks = {c.experiment: c for c in data.blocks if c.species == "C"}
    for b in (b for b in data.blocks if b.species == "B" and b.experiment in c_blocks):
        c = c_blocks[b.experiment]  # C interpolated (log-log) onto the B energies inside its range
        inside = (b.ekin_gev_per_n >= c.ekin_gev_per_n.min()) & (b.ekin_gev_per_n <= c.ekin_gev_per_n.max())
        if inside.sum() < 2:
            continue
        x = b.ekin_gev_per_n[inside]
        c_at = np.exp(np.interp(np.log(x), np.log(c.ekin_gev_per_n), np.log(c.flux)))
        c_rel = np.exp(np.interp(np.log(x), np.log(c.ekin_gev_per_n),
                                 np.log(np.sqrt(c.stat_hi**2 + c.sys_hi**2) / c.flux)))
        ratio = b.flux[inside] / c_at
        err = ratio * np.sqrt((b.stat_hi[inside] ** 2 + b.sys_hi[inside] ** 2) / b.flux[inside] ** 2 + c_rel**2)
        ax.errorbar(x, ratio, yerr=err, fmt="o", ms=3, label=f"B/C {b.experiment}")
    ax.set_xlim(1e-2, 5e3)
    ax.set_title("B/C")
    ax.set_xlabel("E_kin [GeV/n]")
    ax.legend(fontsize=7)
    fig.suptitle(f"CR-ML galdef point, crprop fast mode; chi2_tot = {fit.chi2_tot[0]:.1f} vs '{dataset}' data")
    fig.tight_layout()
    out_png = Path(out_png)
    fig.savefig(out_png, dpi=90)
    plt.close(fig)
    return DemoResult(params, spectra, fit, out_png, time.perf_counter() - t0)
