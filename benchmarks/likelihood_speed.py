"""Time of crnet.likelihood.chi2 per model (profiled normalisations and force-field phi) on the shipped data sets.

The models are ``--models`` copies of GALPROP's crml_base LIS (../shared/reference/galprop/crml_base), each
isotope tilted by (E / 10 GeV/n)^g with g ~ N(0, 0.05) and scaled by U(0.9, 1.1), so that the best phi and
normalisations differ from model to model. Data sets:

* ``paper``: CR-ML's LIS-corrected data, no modulation (normalisations only);
* ``ams02-2021``: AMS-02 2011-18 top of atmosphere, one nuisance phi (grid + bounded Brent, vectorised over models);
* ``ams02-2021-ace2009``: the same plus ACE-CRIS C, O of 2009: two nuisance phi (grid + coordinate descent,
  vectorised over models; a per-model scipy Powell search until session 16).

Timed after one untimed call (imports, caches); the likelihood is numpy. The sum of chi2_tot over the models is
printed so that two versions of the code can be checked to agree while their times are compared
(``PYTHONPATH=<other checkout>``).
GALPROP's time per model (one solve, ../shared/reference/galprop) is in the table for scale: the likelihood
adds this much to every scan model.

    python benchmarks/likelihood_speed.py --models 20
Writes <out-dir>/<stem>.{json,md} (benchmarks/results/likelihood_speed_cpu unless ``--out-dir`` / ``--stem``); each
row has the shared timing keys of common.wall_stats (``wall_s``: median wall time of one chi2 call over all the
models, ``wall_min_s``, ``wall_max_s``, ``repeats``) and the json the provenance of common.machine.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from common import (
    PeakRSS,
    galprop_reference_dir,
    galprop_seconds_per_model,
    repeat_timings,
    save_results,
    wall_stats,
)

import crnet
from crnet.data import get_dataset
from crnet.likelihood import chi2
from crprop.galprop.compare import load_run
from crprop.spectra import Spectra, concatenate_spectra

DATASETS: tuple[str, ...] = ("paper", "ams02-2021", "ams02-2021-ace2009")
TILT_SIGMA: float = 0.05
"""Spread of the per-isotope spectral-index change of the test models (a few per cent in flux over a decade)."""


def tilted_models(n_models: int, seed: int) -> Spectra:
    base = load_run(galprop_reference_dir() / "crml_base").spectra()
    rng = np.random.default_rng(seed)
    e = base.ekin_gev_per_n
    parts = []
    for _ in range(n_models):
        tilt = (e / 10.0) ** rng.normal(0.0, TILT_SIGMA, (base.iso_z.size, 1))
        scale = rng.uniform(0.9, 1.1, (1, base.iso_z.size, 1))
        parts.append(Spectra(e, base.iso_z, base.iso_a, base.iso_flux * tilt[None] * scale, base.converged,
                             base.residual))
    return concatenate_spectra(parts)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--stem", default="likelihood_speed_cpu")
    ap.add_argument("--repeats", type=int, default=3, help="timed calls per data set (median and range reported)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default benchmarks/results)")
    args = ap.parse_args()
    spectra = tilted_models(args.models, args.seed)
    galprop_s, galprop_src = galprop_seconds_per_model()
    rows = []
    for name in DATASETS:
        ds = get_dataset(name)
        chi2(spectra.select([0]), ds)  # untimed: first-call costs
        with PeakRSS() as mem:
            res, walls = repeat_timings(lambda ds=ds: chi2(spectra, ds), args.repeats)
        timing = wall_stats(walls)
        dt = timing["wall_s"]
        rows.append({"dataset": name, "n_phi": len(ds.periods) if ds.needs_modulation else 0, **timing,
                     "ms_per_model": dt / args.models * 1e3, "models_per_s": args.models / dt,
                     "peak_rss_mib": mem.peak_mib, "rss_increase_mib": mem.increase_mib,
                     "sum_chi2": float(res.chi2_tot.sum()), "phi_converged": bool(res.phi_converged.all())})
    lines = [f"# chi2 time per model ({args.models} tilted copies of crml_base, seed {args.seed})", "",
             f"crnet: {crnet.__file__}. GALPROP: {galprop_s:.1f} s per model ({galprop_src}). Median of "
             f"{args.repeats} calls per data set (range in brackets); peak RSS: the process's resident-memory "
             "high-water mark during the calls, increase: above the resident size before them.", "",
             "| data set | nuisance phi | ms / model | models / s | x GALPROP solve | peak RSS MiB | increase MiB "
             "| sum chi2_tot | phi converged |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = (r[key] / args.models * 1e3 for key in ("wall_min_s", "wall_max_s"))
        lines.append(f"| {r['dataset']} | {r['n_phi']} | {r['ms_per_model']:.2f} ({lo:.2f}–{hi:.2f}) | "
                     f"{r['models_per_s']:.1f} | {r['ms_per_model'] / 1e3 / galprop_s:.2e} | {r['peak_rss_mib']:.0f} | "
                     f"{r['rss_increase_mib']:.0f} | {r['sum_chi2']:.4f} | {r['phi_converged']} |")
    save_results(args.stem, "\n".join(lines) + "\n",
                 {"models": args.models, "seed": args.seed, "crnet": crnet.__file__,
                  "galprop_s_per_model": galprop_s, "rows": rows}, out_dir=args.out_dir)


if __name__ == "__main__":
    main()
