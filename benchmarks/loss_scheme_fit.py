"""Best fit to the paper's data with GALPROP's first-order loss stencil and with the second-order one.

The loss stencil moves the paper grid's spectra by 5-12 % below ~0.3 GeV/n (benchmarks/loss_scheme.py), where the
paper's data set has its ACE-CRIS points. This compares the least-squares best fits (``crnet fit``, stretched halo,
numba) of the two stencils: chi^2_tot, its split over the data blocks, and the fitted parameters.

    crnet fit --out FIT1 --z-uniform-half 1.5 --backend numba
    crnet fit --out FIT2 --z-uniform-half 1.5 --backend numba --loss-scheme upwind2
    python benchmarks/loss_scheme_fit.py --upwind1 FIT1 --upwind2 FIT2
Without the two paths the script runs both fits itself (~8 min each on 2 cores).
Writes benchmarks/results/loss_scheme_fit.{json,md}.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import save_results

from crnet.likelihood import chi2
from crnet.scan.fit import FitConfig, FitResult, fit_best
from crnet.scan.models import GridConfig, PropagateModel
from crprop.params import PARAM_NAMES, PropagationParams
from crprop.propagate import propagate

CHI2_RECHECK_RTOL = 1e-6
"""The fit's chi^2 and a fresh solve at its parameters: measured equal to the last digit for both stencils; 1e-6
leaves room for the solver tolerance (a fit evaluates its point in a batch with the Jacobian's neighbours). A
different grid, stencil or data set differs by far more."""
STRETCHED_HALO_KPC = 1.5
"""Uniform z steps up to |z| = 1.5 kpc, wider beyond (the GPU pipelines' grid; README, "Stretched halo")."""


def grid_config(scheme: str) -> GridConfig:
    return GridConfig(z_uniform_half_kpc=STRETCHED_HALO_KPC, loss_scheme=scheme)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--upwind1", type=Path, help="crnet fit result with the first-order stencil")
    ap.add_argument("--upwind2", type=Path, help="crnet fit result with the second-order stencil")
    ap.add_argument("--backend", default="numba")
    args = ap.parse_args()
    fits: dict[str, FitResult] = {}
    for scheme in ("upwind1", "upwind2"):
        path = getattr(args, scheme)
        if path is None:
            model = PropagateModel(grid_config(scheme), backend=args.backend, warm_start=False)
            fits[scheme] = fit_best(model, FitConfig())
        else:
            fits[scheme] = FitResult.load(path)

    rows = {}
    for scheme, fit in fits.items():
        setup = grid_config(scheme).setup()
        spectra = propagate(setup, PropagationParams.from_array(fit.param_array()[None], check_prior=True),
                            mode="fast", backend=args.backend)
        res = chi2(spectra, "paper")
        rows[scheme] = {"chi2_tot": float(res.chi2_tot[0]), "fit_chi2": float(fit.chi2),
                        "n_evaluations": int(fit.n_evaluations),
                        "by_block": dict(zip(res.block_labels, map(float, res.chi2_by_block[0]), strict=True)),
                        "params": dict(zip(PARAM_NAMES, map(float, fit.param_array()), strict=True))}
    u1, u2 = rows["upwind1"], rows["upwind2"]
    lines = ["# Best fit with the first- and the second-order momentum-loss stencil (paper data set)", "",
             f"Grid: the paper's, stretched halo (uniform z up to {STRETCHED_HALO_KPC} kpc). "
             "Commands: see the module docstring of `benchmarks/loss_scheme_fit.py`.", "",
             f"chi^2_tot: upwind1 {u1['chi2_tot']:.2f}, upwind2 {u2['chi2_tot']:.2f} "
             f"({u2['chi2_tot'] - u1['chi2_tot']:+.2f}; {u1['n_evaluations']} / {u2['n_evaluations']} evaluations).",
             "", "| data block | upwind1 | upwind2 | difference |", "|---|---|---|---|"]
    for label in u1["by_block"]:
        a, b = u1["by_block"][label], u2["by_block"][label]
        lines.append(f"| {label} | {a:.2f} | {b:.2f} | {b - a:+.2f} |")
    lines += ["", "| parameter | upwind1 | upwind2 | change |", "|---|---|---|---|"]
    for name in PARAM_NAMES:
        a, b = u1["params"][name], u2["params"][name]
        lines.append(f"| {name} | {a:.6g} | {b:.6g} | {100 * (b / a - 1):+.2f} % |")
    save_results("loss_scheme_fit", "\n".join(lines) + "\n", {"fits": rows})
    if not all(np.isclose(r["chi2_tot"], r["fit_chi2"], rtol=CHI2_RECHECK_RTOL) for r in rows.values()):
        raise SystemExit("re-evaluated chi2_tot differs from the fit's: the fit files do not match these grids")


if __name__ == "__main__":
    main()
