"""Small spectra files' contents: a few models on the CR-ML grid, shared by the spectra-file and CLI tests."""

from __future__ import annotations

import numpy as np

from crprop.spectra import Spectra

GRID = 1e-3 * 1.25 ** np.arange(84)
"""GALPROP / CR-ML energy grid, GeV/n."""

ISO = [(1, 1), (1, 2), (3, 6), (3, 7), (4, 7), (4, 9), (4, 10), (5, 10), (5, 11), (6, 12), (6, 13), (8, 16)]
"""(Z, A) of the test spectra."""


def make_spectra(n_models: int = 3, iso: list[tuple[int, int]] = ISO, grid: np.ndarray = GRID) -> Spectra:
    rng = np.random.default_rng(0)
    norm = {1: 1.0e4, 3: 1.0, 4: 0.5, 5: 2.0, 6: 7.0, 8: 7.0}
    flux = np.empty((n_models, len(iso), grid.size))
    for j, (z, a) in enumerate(iso):
        flux[:, j] = norm[z] / a * (grid / 1.0)[None] ** -2.7 * rng.uniform(0.9, 1.1, (n_models, 1))
        flux[:, j] *= (1 + 1 / grid[None]) ** -1.5
    return Spectra(
        grid,
        [z for z, _ in iso],
        [a for _, a in iso],
        flux,
        np.array([True, False, True][:n_models]),
        np.linspace(1e-9, 1e-7, n_models),
        meta={"mode": "lis", "backend": "numpy", "grid": {"n_r": 21, "n_z": 40}},
    )
