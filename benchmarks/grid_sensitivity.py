"""How much do the paper's grids themselves cost in accuracy? crprop and GALPROP under grid refinement.

GALPROP's numerical-sensitivity runs (../shared/reference/galprop, README) refine crml_base's grid in energy
(Ekin_factor 1.1 instead of 1.25: 195 energies instead of 84) and in space (dr 0.5, dz 0.1 kpc instead of 1, 0.2;
its halo is 3.95 kpc instead of 3.9, so that the z nodes sit at +-0.05, and the response includes that).
This script compares GALPROP's response to each refinement with crprop's, in `galprop` mode (GALPROP's
time stepping, which is what those runs used) and in `fast` mode (the true steady state, which is what the scan
uses). It then adds a coarser energy grid (Ekin_factor 1.25^2) to measure the order of the energy
discretisation and to estimate the standard grid's own error against the continuum limit.

Response = fine / standard - 1 per element, on the standard grid's energies (the fine spectra interpolated
log-log), 0.01-1000 GeV/n. The three energy grids give the order p and the error of the standard grid from
f(h) = f0 + c h^p with h = ln(Ekin_factor), at the energy where the refinement moves the element most.

    python benchmarks/grid_sensitivity.py [--backend numba]
Writes benchmarks/results/grid_sensitivity.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from common import machine, save_results, shared_dir

from crprop.galprop.compare import load_run
from crprop.propagate import propagate

ELEMENTS = ("H", "Li", "Be", "B", "C", "N", "O", "Ne", "Mg", "Si")
EMIN_GEV, EMAX_GEV = 0.01, 1000.0
"""Window of the comparison, GeV/n: the measured data reach down to ~10 MeV/n (Voyager 1)."""
COARSE_FACTOR = 1.25**2
"""Third energy grid for the order of convergence: h doubled (43 energies)."""


def on_grid(spectra, element: str, energies: np.ndarray) -> np.ndarray:
    """An element's flux interpolated log-log onto ``energies`` (GeV/n)."""
    return np.exp(np.interp(np.log(energies), np.log(spectra.ekin_gev_per_n), np.log(spectra.flux(element)[0])))


def responses(fine, standard, energies: np.ndarray) -> dict[str, np.ndarray]:
    return {el: on_grid(fine, el, energies) / on_grid(standard, el, energies) - 1 for el in ELEMENTS}


def order_and_error(f1: float, f2: float, f3: float, h1: float, h2: float, h3: float) -> tuple[float, float]:
    """(p, f2 - f0) of f(h) = f0 + c h^p through three points (bisection on p in [0.2, 4]); nan if not monotone."""
    target = (f3 - f2) / (f2 - f1) if f2 != f1 else math.nan

    def g(p: float) -> float:
        return (h3**p - h2**p) / (h2**p - h1**p) - target

    lo, hi = 0.2, 4.0
    if not np.isfinite(target) or g(lo) * g(hi) > 0:
        return math.nan, math.nan
    for _ in range(80):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if g(lo) * g(mid) > 0 else (lo, mid)
    p = 0.5 * (lo + hi)
    c = (f2 - f1) / (h2**p - h1**p)
    return p, c * h2**p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    args = ap.parse_args()
    root = shared_dir()
    if root is None:
        raise SystemExit("../shared (or $CRNET_SHARED) with reference/galprop is needed")
    ref = root / "reference" / "galprop"
    base, efine, xfine = (load_run(ref / n) for n in ("crml_base", "crml_base_efine", "crml_base_xfine"))
    energies = base.ekin_gev_per_n[(base.ekin_gev_per_n >= EMIN_GEV) & (base.ekin_gev_per_n <= EMAX_GEV)]
    walls: dict[str, float] = {}

    def solve(name: str, run, mode: str, setup=None):
        """crprop on ``run``'s galdef and parameters (xfine's halo is 3.95 kpc, so that z nodes sit at +-0.05)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t0 = time.perf_counter()
            out = propagate(run.setup() if setup is None else setup, run.params, mode=mode, backend=args.backend,
                            check_prior=False)
            walls[name] = time.perf_counter() - t0
        print(f"{name}: {out.ekin_gev_per_n.size} energies, {walls[name]:.1f} s", flush=True)
        return out

    crprop = {}
    for mode in ("galprop", "fast"):
        crprop[mode, "standard"] = solve(f"{mode} standard", base, mode)
        crprop[mode, "efine"] = solve(f"{mode} Ekin_factor 1.1", efine, mode)
        crprop[mode, "xfine"] = solve(f"{mode} dr 0.5 dz 0.1", xfine, mode)
    crprop["fast", "ecoarse"] = solve(f"fast Ekin_factor {COARSE_FACTOR:g}", base, "fast",
                                      base.setup().with_changes(ekin_factor=COARSE_FACTOR))

    table = {}
    for fine_name, fine_run in (("efine", efine), ("xfine", xfine)):
        gal = responses(fine_run.spectra(), base.spectra(), energies)
        mine = {mode: responses(crprop[mode, fine_name], crprop[mode, "standard"], energies)
                for mode in ("galprop", "fast")}
        table[fine_name] = {el: {"galprop_response": float(gal[el][np.argmax(np.abs(gal[el]))]),
                                 "at_gev_per_n": float(energies[np.argmax(np.abs(gal[el]))]),
                                 "crprop_galprop_mode_max_diff": float(np.abs(mine["galprop"][el] - gal[el]).max()),
                                 "crprop_fast_response": float(mine["fast"][el][np.argmax(np.abs(mine["fast"][el]))]),
                                 "crprop_fast_at_gev_per_n": float(energies[np.argmax(np.abs(mine["fast"][el]))])}
                            for el in ELEMENTS}

    h1, h2, h3 = math.log(1.1), math.log(1.25), math.log(COARSE_FACTOR)
    order = {}
    for el in ELEMENTS:
        f1 = on_grid(crprop["fast", "efine"], el, energies)
        f2 = on_grid(crprop["fast", "standard"], el, energies)
        f3 = on_grid(crprop["fast", "ecoarse"], el, energies)
        k = int(np.argmax(np.abs(f1 / f2 - 1)))
        p, err = order_and_error(f1[k], f2[k], f3[k], h1, h2, h3)
        order[el] = {"at_gev_per_n": float(energies[k]), "order": p, "standard_grid_error": err / f2[k],
                     "coarse_response": float(f3[k] / f2[k] - 1)}

    lines = ["# Grid sensitivity: crprop and GALPROP under refinement of the paper's grid (crml_base)", "",
             f"Machine: {machine()}. Command: `python benchmarks/grid_sensitivity.py --backend {args.backend}`. "
             f"Response = fine / standard - 1 per element on the standard energies, {EMIN_GEV:g}-{EMAX_GEV:g} GeV/n "
             "(largest |value| shown, signed, with its energy). GALPROP: the crml_base_efine / crml_base_xfine "
             "runs against crml_base (standard time steps). crprop `galprop` mode repeats GALPROP's time "
             "stepping; `fast` mode is the steady state the scan uses.", ""]
    for fine_name, title in (("efine", "Energy grid: Ekin_factor 1.1 instead of 1.25"),
                             ("xfine", "Spatial grid: dr 0.5 kpc, dz 0.1 kpc instead of 1, 0.2 "
                                       "(halo 3.95 instead of 3.9 kpc)")):
        lines += [f"## {title}", "",
                  "| element | GALPROP response | at GeV/n | crprop galprop mode: max abs. diff. of response | "
                  "crprop fast mode response | at GeV/n |", "|---|---|---|---|---|---|"]
        for el, r in table[fine_name].items():
            lines.append(f"| {el} | {100 * r['galprop_response']:+.2f} % | {r['at_gev_per_n']:.3g} | "
                         f"{r['crprop_galprop_mode_max_diff']:.1e} | {100 * r['crprop_fast_response']:+.2f} % | "
                         f"{r['crprop_fast_at_gev_per_n']:.3g} |")
        lines.append("")
    lines += ["## Order of the energy discretisation and the standard grid's error (fast mode)", "",
              f"Ekin_factor 1.1, 1.25 and {COARSE_FACTOR:g}, at the energy where 1.1 moves the element most. "
              "p from f(h) = f0 + c h^p, h = ln(Ekin_factor); the error is the standard grid's f(h2) / f0 - 1.", "",
              f"| element | at GeV/n | response to Ekin_factor {COARSE_FACTOR:g} | order p | "
              "standard grid (1.25) vs continuum |", "|---|---|---|---|---|"]
    for el, r in order.items():
        lines.append(f"| {el} | {r['at_gev_per_n']:.3g} | {100 * r['coarse_response']:+.2f} % | {r['order']:.2f} | "
                     f"{100 * r['standard_grid_error']:+.2f} % |")
    lines += ["", "Wall times (s): " + ", ".join(f"{k} {v:.1f}" for k, v in walls.items()) + "."]
    save_results("grid_sensitivity", "\n".join(lines) + "\n",
                 {"machine": machine(), "backend": args.backend, "window_gev_per_n": [EMIN_GEV, EMAX_GEV],
                  "refinement": table, "energy_order": order, "wall_s": walls})

if __name__ == "__main__":
    main()
