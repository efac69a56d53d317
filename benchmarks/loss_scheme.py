"""Second-order momentum-loss stencil ('upwind2') against GALPROP's first-order one ('upwind1') on crml_base.

The first-order upwind loss term makes the paper grid's spectra 7-11 % high near 0.1 GeV/n against the continuum
(benchmarks/results/grid_sensitivity.md). Here both stencils are solved (fast mode) on the paper's energy grid
(Ekin_factor 1.25) and on nested grids Ekin_factor 1.05, 1.05^2, 1.05^4 (h, 2h, 4h), which give each stencil's
observed order p = log2((f(4h) - f(2h)) / (f(2h) - f(h))) per element and energy, and a continuum estimate by
Richardson extrapolation, f0 = (2^q f(h) - f(2h)) / (2^q - 1), from each stencil with its own q (1 and 2). Two
independent estimates of the same limit: their difference says how far either can be trusted. Listed: each
stencil's paper-grid error against the continuum, after force-field modulation at ACE-CRIS's energies, the same
for upwind2 without reacceleration (v_A = 0: what remains of the error then is not the reacceleration stencil's),
and the solver's cost (Douglas steps, wall time) for each.

    python benchmarks/loss_scheme.py [--backend numba]
Writes benchmarks/results/loss_scheme.{json,md}.
"""

from __future__ import annotations

import argparse
import time
import warnings
from dataclasses import replace

import numpy as np
from common import galprop_reference_dir, save_results
from grid_sensitivity import ACE_CRIS_GEV, ACE_ELEMENTS, ACE_PHI_MV, ELEMENTS, NESTED_FACTORS, on_grid

from crprop.galprop.compare import load_run
from crprop.propagate import propagate

WINDOW_GEV = (0.01, 1000.0)
"""Energies compared, GeV/n (the data reach down to ~10 MeV/n)."""
LISTED_GEV = (0.01, 0.03, 0.1, 0.3, 1.0, 10.0, 100.0)
"""Paper-grid energies (nearest node) at which the errors are listed, GeV/n."""
PAPER_FACTOR = 1.25
SCHEMES = {"upwind1": 1, "upwind2": 2}
"""Stencil -> the order q its Richardson step assumes."""
NO_REACC = "upwind2, v_A = 0"
"""A third run set: upwind2 without reacceleration, to tell the reacceleration stencil's share of what remains."""
NO_REACC_ELEMENTS = ("H", "Li", "B", "C", "O")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backend", default="numba")
    args = ap.parse_args()
    base = load_run(galprop_reference_dir() / "crml_base")
    walls: dict[str, float] = {}
    steps: dict[str, int] = {}
    spectra = {}
    runs = {scheme: (scheme, base.params) for scheme in SCHEMES}
    runs[NO_REACC] = ("upwind2", replace(base.params, v_alfven_km_s=0.0))
    for name, (scheme, params) in runs.items():
        for factor in (PAPER_FACTOR, *NESTED_FACTORS):
            setup = base.setup().with_changes(ekin_factor=factor, loss_scheme=scheme)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                t0 = time.perf_counter()
                out = propagate(setup, params, mode="fast", backend=args.backend, check_prior=False)
            key = f"{name} Ekin_factor {factor:.6g}"
            walls[key] = time.perf_counter() - t0
            steps[key] = int(max(out.meta["steps_per_species"].values()))
            if not np.all(out.converged):
                raise SystemExit(f"{key}: not converged")
            spectra[name, factor] = out
            print(f"{key}: {out.ekin_gev_per_n.size} energies, {walls[key]:.1f} s", flush=True)

    e_std = spectra["upwind1", PAPER_FACTOR].ekin_gev_per_n
    energies = e_std[(e_std >= WINDOW_GEV[0]) & (e_std <= WINDOW_GEV[1])]
    nodes = [int(np.argmin(np.abs(np.log(energies / e)))) for e in LISTED_GEV]

    def continuum(name: str, el: str, x: np.ndarray, modulate: float | None = None) -> np.ndarray:
        q = SCHEMES[runs[name][0]]
        f_h, f_2h = (on_grid(spectra[name, f] if modulate is None else spectra[name, f].modulate(modulate),
                             el, x) for f in NESTED_FACTORS[:2])
        return (2.0**q * f_h - f_2h) / (2.0**q - 1.0)

    result: dict[str, dict] = {}
    for el in ELEMENTS:
        ref = continuum("upwind2", el, energies)
        alt = continuum("upwind1", el, energies)
        row = {"continuum_estimates_differ_max": float(np.abs(alt / ref - 1).max())}
        for scheme in SCHEMES:
            f_h, f_2h, f_4h = (on_grid(spectra[scheme, f], el, energies) for f in NESTED_FACTORS)
            k = int(np.argmax(np.abs(f_h / f_2h - 1)))
            err = on_grid(spectra[scheme, PAPER_FACTOR], el, energies) / ref - 1
            i = int(np.argmax(np.abs(err)))
            row[scheme] = {"order": float(np.log2(abs((f_4h[k] - f_2h[k]) / (f_2h[k] - f_h[k])))),
                           "order_at_gev_per_n": float(energies[k]),
                           "paper_grid_error_max": float(err[i]), "at_gev_per_n": float(energies[i]),
                           "paper_grid_error_at": {f"{energies[j]:.3g}": float(err[j]) for j in nodes}}
        result[el] = row

    ace = {}
    x = np.asarray(ACE_CRIS_GEV)
    for phi in ACE_PHI_MV:
        for el in ACE_ELEMENTS:
            ref = continuum("upwind2", el, x, modulate=phi)
            ace[f"{el} phi {phi:g} MV"] = {
                scheme: (on_grid(spectra[scheme, PAPER_FACTOR].modulate(phi), el, x) / ref - 1).tolist()
                for scheme in SCHEMES}

    lines = ["# Momentum-loss stencil: GALPROP's first-order upwind vs crnet's second-order (crml_base, fast mode)", "",
             f"Command: `python benchmarks/loss_scheme.py --backend {args.backend}`. "
             "Continuum: Richardson extrapolation of the second-order stencil's nested grids (Ekin_factor 1.05, "
             "1.05^2; q = 2). The first-order stencil's own estimate (q = 1) is listed against it. Error = "
             f"f(Ekin_factor {PAPER_FACTOR}) / continuum - 1 on the paper grid's energies "
             f"{WINDOW_GEV[0]:g}-{WINDOW_GEV[1]:g} GeV/n.", "",
             "| element | stencil | order p (at GeV/n) | paper grid vs continuum, largest (at GeV/n) | "
             + " | ".join(f"at {e:g}" for e in LISTED_GEV) + " |",
             "|---|---|---|---|" + "---|" * len(LISTED_GEV)]
    for el, row in result.items():
        for scheme in SCHEMES:
            r = row[scheme]
            at = " | ".join(f"{100 * v:+.2f} %" for v in r["paper_grid_error_at"].values())
            lines.append(f"| {el} | {scheme} | {r['order']:.2f} ({r['order_at_gev_per_n']:.3g}) | "
                         f"{100 * r['paper_grid_error_max']:+.2f} % ({r['at_gev_per_n']:.3g}) | {at} |")
    lines += ["", "Largest difference between the two continuum estimates (q = 1 from upwind1, q = 2 from upwind2): "
              + ", ".join(f"{el} {100 * row['continuum_estimates_differ_max']:.2f} %" for el, row in result.items())
              + ".", "", "## After modulation, at ACE-CRIS's energies", "",
              "| element, φ | stencil | " + " | ".join(f"{e:g} GeV/n" for e in ACE_CRIS_GEV) + " |",
              "|---|---|" + "---|" * len(ACE_CRIS_GEV)]
    for key, by_scheme in ace.items():
        for scheme, errs in by_scheme.items():
            lines.append(f"| {key} | {scheme} | " + " | ".join(f"{100 * v:+.2f} %" for v in errs) + " |")
    no_reacc = {el: (on_grid(spectra[NO_REACC, PAPER_FACTOR], el, energies) / continuum(NO_REACC, el, energies) - 1)
                for el in NO_REACC_ELEMENTS}
    lines += ["", f"## {NO_REACC}: paper grid vs its own continuum (same Richardson step)", "",
              "| element | " + " | ".join(f"at {e:g}" for e in LISTED_GEV) + " |", "|---|" + "---|" * len(LISTED_GEV)]
    for el, err in no_reacc.items():
        lines.append(f"| {el} | " + " | ".join(f"{100 * err[j]:+.2f} %" for j in nodes) + " |")
    lines += ["", "## Cost", "", "| run | wall (s) | Douglas steps (largest species) |", "|---|---|---|"]
    for key in walls:
        lines.append(f"| {key} | {walls[key]:.1f} | {steps[key]} |")
    save_results("loss_scheme", "\n".join(lines) + "\n",
                 {"backend": args.backend, "window_gev_per_n": list(WINDOW_GEV),
                  "elements": result, "ace_cris_modulated": ace, "wall_s": walls, "steps": steps,
                  "upwind2_without_reacceleration": {el: {f"{energies[j]:.3g}": float(err[j]) for j in nodes}
                                                     for el, err in no_reacc.items()}})


if __name__ == "__main__":
    main()
