"""Full-network agreement of the cupy backend with numba for crml_base (both modes, fp64 and fp32).

Issue requirement: cupy equals numba to 1e-10 relative (float64) and 1e-5 (float32) on the full
network for crml_base. Prints the largest relative difference of every isotope's solar flux
(fluxes above 1e-30 of each isotope's maximum) and the GPU memory of each cupy run (device_pool_mib: the bytes
CuPy's default memory pool holds after the run, emptied before it, i.e. its high-water mark; common.device_pool_mib).
Writes <out-dir>/<stem>.{json,md} (benchmarks/results/gpu_network_check unless ``--out-dir`` / ``--stem``; the json
with the provenance of common.machine). Each row has the shared timing keys of common.wall_stats for the cupy run
(``wall_s``: median of ``--repeats`` calls, default one; ``wall_min_s``, ``wall_max_s``, ``repeats``) and ``numba_s``,
the one timed numba call of the reference (or the time saved with it).
The numba side can be computed on another machine and carried over:
    python benchmarks/gpu_network_check.py --save-reference numba_ref.npz     (CPU)
    python benchmarks/gpu_network_check.py --reference numba_ref.npz          (GPU)
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
from common import device_pool_mib, repeat_timings, save_results, wall_stats

from crprop.backends import release_cached_device_memory
from crprop.galaxy import GalaxySetup, paper_galdef_path
from crprop.galprop.galdef import read_galdef
from crprop.params import params_from_galdef
from crprop.propagate import propagate

FP64_REQUIRED = 1e-10
FP32_REQUIRED = 1e-5
"""The issue's agreement with numba (relative, solar fluxes above 1e-30 of each isotope's maximum)."""


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    """Largest |a / b - 1| over the isotopes (columns) of (E, isotopes) fluxes, where b > 1e-30 of its column's max."""
    out = 0.0
    for i in range(a.shape[1]):
        ref = b[:, i]
        m = ref > 1e-30 * ref.max()
        out = max(out, float(np.abs(a[:, i][m] / ref[m] - 1).max()))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--save-reference", default=None, help="only run numba and save its fluxes (npz) for --reference")
    ap.add_argument("--reference", default=None, help="numba fluxes saved by --save-reference (skips numba here)")
    ap.add_argument("--repeats", type=int, default=1, help="timed cupy calls per row (median and range reported)")
    ap.add_argument("--stem", default="gpu_network_check", help="results file name (without .json / .md)")
    ap.add_argument("--out-dir", type=Path, default=None, help="where the results go (default benchmarks/results)")
    args = ap.parse_args()
    if args.repeats < 1:
        ap.error("--repeats must be >= 1")
    warnings.simplefilter("ignore")
    g = read_galdef(paper_galdef_path())
    setup = GalaxySetup.from_galdef(g)
    params = [params_from_galdef(g, check_prior=False)] * 4
    refs: dict[str, tuple[np.ndarray, float, float]] = {}
    if args.reference:
        with np.load(args.reference) as z:
            for mode in ("fast", "galprop"):
                refs[mode] = (z[f"{mode}_iso_flux"], float(z[f"{mode}_seconds"]), float(z[f"{mode}_residual"]))
    else:
        for mode in ("fast", "galprop"):
            ref, walls = repeat_timings(
                lambda mode=mode: propagate(setup, params, mode=mode, backend="numba", check_prior=False), 1)
            refs[mode] = (ref.iso_flux, walls[0], float(ref.residual.max()))
    if args.save_reference:
        np.savez(args.save_reference, **{f"{m}_{k}": v for m, r in refs.items()
                                          for k, v in zip(("iso_flux", "seconds", "residual"), r, strict=True)})
        return
    rows = []
    for mode in ("fast", "galprop"):
        ref_flux, t_ref, ref_res = refs[mode]
        for precision in ("float64", "float32"):
            release_cached_device_memory()  # empty CuPy's pool: what it holds after the run is the run's peak
            # propagate returns host arrays (it synchronises), as repeat_timings needs
            gpu, walls = repeat_timings(
                lambda mode=mode, precision=precision: propagate(setup, params, mode=mode, backend="cupy",
                                                                 check_prior=False,
                                                                 backend_options={"precision": precision}),
                args.repeats)
            pool_mib = device_pool_mib()
            row = {"mode": mode, "precision": precision, "max_rel_diff_vs_numba": max_rel(gpu.iso_flux, ref_flux),
                   **wall_stats(walls), "numba_s": t_ref, "residual_numba": ref_res,
                   "residual_cupy": float(gpu.residual.max()), "device_pool_mib": pool_mib,
                   "required": FP64_REQUIRED if precision == "float64" else FP32_REQUIRED}
            row["passes"] = row["max_rel_diff_vs_numba"] <= row["required"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    reference = args.reference or "computed here"
    save_results(args.stem, report(rows, reference), {"numba_reference": reference, "rows": rows},
                 out_dir=args.out_dir)
    if not all(r["passes"] for r in rows):
        raise SystemExit("cupy differs from numba by more than the required tolerance")


def report(rows: list[dict], reference: str) -> str:
    """The markdown table of the rows (common.save_results appends the machine and command)."""
    lines = [f"# cupy vs numba, full network, crml_base x 4 (numba reference: {reference})", "",
             "Largest relative difference of every isotope's solar flux (fluxes above 1e-30 of each isotope's "
             "maximum). cupy s: median of the timed calls (range in brackets); numba s: one call; device pool: MiB "
             "CuPy's memory pool holds after the row (emptied before it).", "",
             "| mode | precision | max rel diff | required | passes | cupy s | numba s | residual cupy | "
             "residual numba | device pool MiB |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        pool = f"{r['device_pool_mib']:.0f}" if r.get("device_pool_mib") is not None else "-"
        lines.append(f"| {r['mode']} | {r['precision']} | {r['max_rel_diff_vs_numba']:.2e} | {r['required']:.0e} | "
                     f"{r['passes']} | {r['wall_s']:.2f} ({r['wall_min_s']:.2f}–{r['wall_max_s']:.2f}) | "
                     f"{r['numba_s']:.2f} | {r['residual_cupy']:.2e} | {r['residual_numba']:.2e} | {pool} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
