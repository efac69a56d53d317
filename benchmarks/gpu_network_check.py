"""Full-network agreement of the cupy backend with numba for crml_base (both modes, fp64 and fp32).

Issue requirement: cupy equals numba to 1e-10 relative (float64) and 1e-5 (float32) on the full
network for crml_base. Prints the largest relative difference of every isotope's solar flux
(fluxes above 1e-30 of each isotope's maximum) and the GPU memory of each cupy run (device_pool_mib: the bytes
CuPy's default memory pool holds after the run, emptied before it, i.e. its high-water mark; common.device_pool_mib).
Writes benchmarks/results/gpu_network_check.json.
The numba side can be computed on another machine and carried over:
    python benchmarks/gpu_network_check.py --save-reference numba_ref.npz     (CPU)
    python benchmarks/gpu_network_check.py --reference numba_ref.npz          (GPU)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import numpy as np
from common import RESULTS, device_pool_mib, machine

from crprop.backends import release_cached_device_memory
from crprop.galaxy import GalaxySetup, paper_galdef_path
from crprop.galprop.galdef import read_galdef
from crprop.params import params_from_galdef
from crprop.propagate import propagate

FP64_REQUIRED = 1e-10
FP32_REQUIRED = 1e-5
"""The issue's agreement with numba (relative, solar fluxes above 1e-30 of each isotope's maximum)."""


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
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
    args = ap.parse_args()
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
            t0 = time.perf_counter()
            ref = propagate(setup, params, mode=mode, backend="numba", check_prior=False)
            refs[mode] = (ref.iso_flux, time.perf_counter() - t0, float(ref.residual.max()))
    if args.save_reference:
        np.savez(args.save_reference, **{f"{m}_{k}": v for m, r in refs.items()
                                          for k, v in zip(("iso_flux", "seconds", "residual"), r, strict=True)})
        return
    rows = []
    for mode in ("fast", "galprop"):
        ref_flux, t_ref, ref_res = refs[mode]
        for precision in ("float64", "float32"):
            release_cached_device_memory()  # empty CuPy's pool: what it holds after the run is the run's peak
            t0 = time.perf_counter()
            gpu = propagate(setup, params, mode=mode, backend="cupy", check_prior=False,
                            backend_options={"precision": precision})
            t_gpu = time.perf_counter() - t0
            pool_mib = device_pool_mib()
            row = {"mode": mode, "precision": precision, "max_rel_diff_vs_numba": max_rel(gpu.iso_flux, ref_flux),
                   "numba_s": t_ref, "cupy_s": t_gpu, "residual_numba": ref_res,
                   "residual_cupy": float(gpu.residual.max()), "device_pool_mib": pool_mib,
                   "required": FP64_REQUIRED if precision == "float64" else FP32_REQUIRED}
            row["passes"] = row["max_rel_diff_vs_numba"] <= row["required"]
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_network_check.json").write_text(json.dumps(
        {"machine": machine(), "numba_reference": args.reference or "computed here", "rows": rows}, indent=1))
    if not all(r["passes"] for r in rows):
        raise SystemExit("cupy differs from numba by more than the required tolerance")


if __name__ == "__main__":
    main()
