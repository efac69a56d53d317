"""The smallest real inversion loop for tests of the feedback loop and the evaluation: a Sobol scan on a tiny grid
at the scan tolerance of the CPU and GPU configs, test pseudo-spectra of it and a Machine A trained on it (numba,
a few seconds)."""

from __future__ import annotations

from pathlib import Path

from crnet.machines.training import TrainConfig, train
from crnet.pseudodata import PseudoDataConfig, make_pseudodata
from crnet.scan.models import GridConfig
from crnet.scan.runner import ScanConfig, run_scan

GRID = GridConfig(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)
"""A tiny (r, z, E) grid: 4 kpc / 1.3 kpc cells, kinetic energies a factor 3 apart; enough to run every stage."""
TOL = 1e-4
"""The scans' solver tolerance: not the solver's default (1e-6), as in configs/pipeline_cpu.toml and the GPU
configs, so that settings taken from the store differ from the defaults."""

OPTIONS_AGAINST_THE_STORE: list[tuple[list[str], str]] = [
    (["--dz", "1.0"], "--dz 1.0 differs from the store's 1.3"),
    (["--dr", "1.0"], "--dr 1.0 differs from the store's 4.0"),
    (["--tol", "1e-6"], "--tol 1e-06 differs from the store's 0.0001"),
    (["--max-steps", "50"], "--max-steps 50 differs from the store's 600"),
    (["--mode", "exact"], "--mode 'exact' differs from the store's 'fast'"),
    (["--half-lives", "measured"], "--half-lives 'measured' differs from the store's 'galprop'"),
]
"""(command-line options that disagree with :func:`build_loop_world`'s scan, the start of the refusal naming them)
for the commands whose re-simulations repeat a store's (crnet feedback --store, crnet evaluate --mocks)."""


def build_loop_world(directory: Path) -> dict[str, Path]:
    """In ``directory``: ``scan.h5`` (8 Sobol models at :data:`TOL` on :data:`GRID`), ``test.h5`` (3 pseudo-spectra
    per model, seed 5) and ``a.pt`` (Machine A, one epoch); returns their paths by name."""
    run_scan(directory / "scan.h5", ScanConfig(design="sobol", n_points=8, batch_size=8, backend="numba", grid=GRID,
                                               tol=TOL), progress=False)
    make_pseudodata(directory / "scan.h5", directory / "test.h5", PseudoDataConfig(n_pseudo=3, seed=5))
    train(directory / "scan.h5", directory / "a.pt",
          TrainConfig(machine="A", epochs=1, batch_size=4, progress=False, threads=1))
    return {"scan": directory / "scan.h5", "test": directory / "test.h5", "a": directory / "a.pt"}
