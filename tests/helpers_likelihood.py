"""Random smooth spectra on the CR-ML grid close to a data set's values, their predictions at the data energies, and
small top-of-atmosphere data sets: shared by the likelihood, phi-profile and Problem-cache tests."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from crnet.data import DataBlock, Dataset, Modulation, get_dataset
from crnet.likelihood import interpolate_spectra
from crprop.spectra import Spectra

GRID = 1e-3 * 1.25 ** np.arange(84)
"""The CR-ML / GALPROP energy grid, GeV/n."""

ISOTOPES = [
    (3, 6, 0.5),
    (3, 7, 0.5),
    (4, 7, 0.55),
    (4, 9, 0.35),
    (4, 10, 0.10),
    (5, 10, 0.3),
    (5, 11, 0.7),
    (6, 12, 0.95),
    (6, 13, 0.05),
    (7, 14, 0.5),
    (7, 15, 0.5),
    (8, 16, 1.0),
]
"""(Z, A, fraction of the element) of the random test spectra."""


def make_spectra(rng: np.random.Generator, n_models: int, ds: Dataset, spread: float = 0.35) -> Spectra:
    """Random smooth spectra close to the data of ``ds`` (element flux = data x smooth distortion)."""
    flux = np.zeros((n_models, len(ISOTOPES), GRID.size))
    logx = np.log(GRID)
    for el_z, sym in ((3, "Li"), (4, "Be"), (5, "B"), (6, "C"), (7, "N"), (8, "O")):
        blocks = [b for b in ds.blocks if b.species == sym]
        if blocks:
            e = np.concatenate([b.ekin_gev_per_n for b in blocks])
            f = np.concatenate([b.flux for b in blocks])
            order = np.argsort(e)
            base = np.exp(np.interp(logx, np.log(e[order]), np.log(f[order])))
        else:
            base = np.exp(-2.7 * logx)
        for m in range(n_models):
            c = rng.normal(0.0, [spread, 0.05, 0.01])
            distort = np.exp(c[0] + c[1] * (logx - 1.0) + c[2] * (logx - 1.0) ** 2)
            for i, (z, _, frac) in enumerate(ISOTOPES):
                if z == el_z:
                    flux[m, i] = frac * base * distort
    return Spectra(
        GRID,
        [z for z, _, _ in ISOTOPES],
        [a for _, a, _ in ISOTOPES],
        flux,
        np.ones(n_models, bool),
        np.zeros(n_models),
    )


def predictions(spectra: Spectra, ds: Dataset) -> list[np.ndarray]:
    return [
        interpolate_spectra(spectra.ekin_gev_per_n, spectra.flux(b.species), b.ekin_gev_per_n)
        for b in ds.blocks
    ]


def toa_dataset(nuisance: bool) -> Dataset:
    paper = get_dataset("paper")
    blocks = [replace(b, lis=b.experiment == "Voyager 1") for b in paper.blocks]
    return Dataset(
        "toa-test",
        "paper values treated as top of atmosphere",
        tuple(blocks),
        modulation=Modulation(phi_mv=400.0, nuisance=nuisance, bounds_mv=(100.0, 900.0)),
    )


def two_period_dataset(spectra: Spectra, phi_a: float, phi_b: float) -> Dataset:
    """Noise-free top-of-atmosphere data of model 0: B and C of period 'A' at phi_a, C and O of period 'B'
    (ACE-like energies) at phi_b, 2 % errors; normalisations all 1."""
    blocks = []
    for period, phi, species, energies in (
        ("A", phi_a, ("B", "C"), np.geomspace(0.5, 50.0, 12)),
        ("B", phi_b, ("C", "O"), np.geomspace(0.08, 0.4, 7)),
    ):
        toa = spectra.select([0]).modulate(phi)
        for sp in species:
            flux = interpolate_spectra(GRID, toa.flux(sp), energies)[0]
            zeros = np.zeros_like(flux)
            blocks.append(DataBlock(label=f"{sp} {period}", species=sp, experiment=period, ekin_gev_per_n=energies,
                                    flux=flux, stat_lo=zeros, stat_hi=zeros, sys_lo=0.02 * flux,
                                    sys_hi=0.02 * flux, lis=False, period=period))
    mods = {key: Modulation(phi_mv=500.0, nuisance=True, bounds_mv=(100.0, 900.0)) for key in ("A", "B")}
    return Dataset("two-periods", "", tuple(blocks), modulation=mods)
