"""How much do the paper's grids themselves cost in accuracy? crprop and GALPROP under grid refinement.

GALPROP's numerical-sensitivity runs (../shared/reference/galprop, README) refine crml_base's grid in energy
(Ekin_factor 1.1 instead of 1.25: 195 energies instead of 84) and in space (dr 0.5, dz 0.1 kpc instead of 1, 0.2;
its halo is 3.95 kpc instead of 3.9, so that the z nodes sit at +-0.05, and the response includes that).
This script compares GALPROP's response to each refinement with crprop's, in `galprop` mode (GALPROP's
time stepping, which is what those runs used) and in `fast` mode (the true steady state, which is what the scan
uses). It then solves on nested energy grids, Ekin_factor 1.05, 1.05^2 and 1.05^4 (h, 2h, 4h with h = ln 1.05), to
measure the order of the energy discretisation, p = log2((f(4h) - f(2h)) / (f(2h) - f(h))), and to estimate the
continuum limit by Richardson extrapolation, f0 = (2^p f(h) - f(2h)) / (2^p - 1) with p = 1. The standard grid's
own error is then f(1.25) / f0 - 1 on its energies.

Response = fine / standard - 1 per element, on the standard grid's energies (the fine spectra interpolated
log-log), 0.01-1000 GeV/n.

    python benchmarks/grid_sensitivity.py [--backend numba]
Writes benchmarks/results/grid_sensitivity.{json,md}.
"""

from __future__ import annotations

import argparse
import math
import time
import warnings

import numpy as np
from common import galprop_reference_dir, save_results, warm_up_propagate

from crprop.galprop.compare import load_run
from crprop.propagate import propagate

ELEMENTS = ("H", "Li", "Be", "B", "C", "N", "O", "Ne", "Mg", "Si")
EMIN_GEV, EMAX_GEV = 0.01, 1000.0
"""Window of the comparison, GeV/n: the measured data reach down to ~10 MeV/n (Voyager 1)."""
NESTED_FACTORS = (1.05, 1.05**2, 1.05**4)
"""Energy grids h, 2h, 4h (h = ln 1.05: 379, 190 and 96 energies) for the order and the continuum estimate."""
ORDER_ENERGIES_GEV = (0.01, 0.1, 1.0, 10.0, 100.0)
"""Standard-grid energies (nearest node) at which the continuum error is listed, GeV/n."""
ACE_CRIS_GEV = (0.072, 0.1, 0.2)
"""ACE-CRIS's energies (../shared/data/ace_cris: 0.072-0.2 GeV/n; its quoted errors are ~3 %)."""
ACE_PHI_MV = (425.0, 700.0)
"""Force-field potentials spanning ACE-CRIS's periods (CRDB's 425 MV for 1997/98, and the paper's ~700 MV)."""
ACE_ELEMENTS = ("B", "C", "N", "O")


def on_grid(spectra, element: str, energies: np.ndarray) -> np.ndarray:
    """An element's flux interpolated log-log onto ``energies`` (GeV/n)."""
    return np.exp(np.interp(np.log(energies), np.log(spectra.ekin_gev_per_n), np.log(spectra.flux(element)[0])))


def responses(fine, standard, energies: np.ndarray) -> dict[str, np.ndarray]:
    return {el: on_grid(fine, el, energies) / on_grid(standard, el, energies) - 1 for el in ELEMENTS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    args = ap.parse_args()
    ref = galprop_reference_dir()
    base, efine, xfine = (load_run(ref / n) for n in ("crml_base", "crml_base_efine", "crml_base_xfine"))
    energies = base.ekin_gev_per_n[(base.ekin_gev_per_n >= EMIN_GEV) & (base.ekin_gev_per_n <= EMAX_GEV)]
    walls: dict[str, float] = {}
    # JIT compilation of both modes outside the printed wall times
    warm_s = warm_up_propagate(base.setup(), base.params, args.backend, modes=("galprop", "fast"))
    print(f"warm-up (tiny grid, both modes): {warm_s:.1f} s", flush=True)

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
    for factor in NESTED_FACTORS:
        crprop["fast", factor] = solve(f"fast Ekin_factor {factor:.6g}", base, "fast",
                                       base.setup().with_changes(ekin_factor=factor))

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

    order = {}
    for el in ELEMENTS:
        f_h, f_2h, f_4h = (on_grid(crprop["fast", f], el, energies) for f in NESTED_FACTORS)
        continuum = 2.0 * f_h - f_2h  # Richardson, first order
        error = on_grid(crprop["fast", "standard"], el, energies) / continuum - 1
        k = int(np.argmax(np.abs(f_h / f_2h - 1)))
        nodes = [int(np.argmin(np.abs(np.log(energies / e)))) for e in ORDER_ENERGIES_GEV]
        order[el] = {"at_gev_per_n": float(energies[k]),
                     "order": float(math.log2(abs((f_4h[k] - f_2h[k]) / (f_2h[k] - f_h[k])))),
                     "richardson_correction": float(continuum[k] / f_h[k] - 1),
                     "standard_grid_error_max": float(error[np.argmax(np.abs(error))]),
                     "standard_grid_error_at_gev_per_n": float(energies[np.argmax(np.abs(error))]),
                     "standard_grid_error_at": {f"{energies[i]:.3g}": float(error[i]) for i in nodes}}

    ace = {}
    for phi in ACE_PHI_MV:
        std_mod = crprop["fast", "standard"].modulate(phi)
        fine_mod = [crprop["fast", f].modulate(phi) for f in NESTED_FACTORS[:2]]
        x = np.asarray(ACE_CRIS_GEV)
        for el in ACE_ELEMENTS:
            continuum = 2.0 * on_grid(fine_mod[0], el, x) - on_grid(fine_mod[1], el, x)
            ace[f"{el} phi {phi:g} MV"] = (on_grid(std_mod, el, x) / continuum - 1).tolist()

    lines = ["# Grid sensitivity: crprop and GALPROP under refinement of the paper's grid (crml_base)", "",
             f"Command: `python benchmarks/grid_sensitivity.py --backend {args.backend}`. "
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
              "Nested grids Ekin_factor 1.05, 1.05^2, 1.05^4 (h, 2h, 4h). Order p at the energy where h and 2h "
              "differ most; continuum f0 = 2 f(h) - f(2h); the Richardson step is f0 / f(h) - 1 there. The standard "
              "grid's error is f(1.25) / f0 - 1 (largest |value| and at the listed energies).", "",
              "| element | at GeV/n | order p | Richardson step | standard grid vs continuum, largest | at GeV/n | "
              + " | ".join(f"at {e:g}" for e in ORDER_ENERGIES_GEV) + " |",
              "|---|---|---|---|---|---|" + "---|" * len(ORDER_ENERGIES_GEV)]
    for el, r in order.items():
        at = " | ".join(f"{100 * v:+.2f} %" for v in r["standard_grid_error_at"].values())
        lines.append(f"| {el} | {r['at_gev_per_n']:.3g} | {r['order']:.2f} | "
                     f"{100 * r['richardson_correction']:+.2f} % | {100 * r['standard_grid_error_max']:+.2f} % | "
                     f"{r['standard_grid_error_at_gev_per_n']:.3g} | {at} |")
    lines += ["", "### After modulation, at ACE-CRIS's energies", "",
              "Force-field modulated fluxes of the standard grid against the continuum estimate (same Richardson step, "
              "applied after modulation).", "",
              "| element, φ | " + " | ".join(f"{e:g} GeV/n" for e in ACE_CRIS_GEV) + " |",
              "|---|" + "---|" * len(ACE_CRIS_GEV)]
    for key, errs in ace.items():
        lines.append(f"| {key} | " + " | ".join(f"{100 * v:+.2f} %" for v in errs) + " |")
    lines += ["", "Wall times (s, after a warm-up on a tiny grid, so without JIT compilation): "
              + ", ".join(f"{k} {v:.1f}" for k, v in walls.items()) + "."]
    save_results("grid_sensitivity", "\n".join(lines) + "\n",
                 {"backend": args.backend, "window_gev_per_n": [EMIN_GEV, EMAX_GEV],
                  "refinement": table, "energy_order": order, "ace_cris_modulated": ace, "wall_s": walls,
                  "warm_up_s": warm_s})

if __name__ == "__main__":
    main()
