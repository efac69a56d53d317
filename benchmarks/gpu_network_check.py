"""Full-network agreement of the cupy backend with numba for crml_base (both modes, fp64 and fp32).

Issue requirement: cupy equals numba to 1e-10 relative (float64) and 1e-5 (float32) on the full
network for crml_base. Prints the largest relative difference of every isotope's solar flux
(fluxes above 1e-30 of each isotope's maximum). Writes benchmarks/results/gpu_network_check.json.
"""

from __future__ import annotations

import json
import time
import warnings

import numpy as np
from common import RESULTS, machine

from crprop.galaxy import GalaxySetup, paper_galdef_path
from crprop.galprop.galdef import read_galdef
from crprop.params import params_from_galdef
from crprop.propagate import propagate


def max_rel(a: np.ndarray, b: np.ndarray) -> float:
    out = 0.0
    for i in range(a.shape[1]):
        ref = b[:, i]
        m = ref > 1e-30 * ref.max()
        out = max(out, float(np.abs(a[:, i][m] / ref[m] - 1).max()))
    return out


def main() -> None:
    warnings.simplefilter("ignore")
    g = read_galdef(paper_galdef_path())
    setup = GalaxySetup.from_galdef(g)
    params = [params_from_galdef(g, check_prior=False)] * 4
    rows = []
    for mode in ("fast", "galprop"):
        t0 = time.perf_counter()
        ref = propagate(setup, params, mode=mode, backend="numba", check_prior=False)
        t_ref = time.perf_counter() - t0
        for precision in ("float64", "float32"):
            t0 = time.perf_counter()
            gpu = propagate(setup, params, mode=mode, backend="cupy", check_prior=False,
                            backend_options={"precision": precision})
            t_gpu = time.perf_counter() - t0
            row = {"mode": mode, "precision": precision, "max_rel_diff_vs_numba": max_rel(gpu.iso_flux, ref.iso_flux),
                   "numba_s": t_ref, "cupy_s": t_gpu, "residual_numba": float(ref.residual.max()),
                   "residual_cupy": float(gpu.residual.max())}
            rows.append(row)
            print(json.dumps(row), flush=True)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "gpu_network_check.json").write_text(json.dumps({"machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
