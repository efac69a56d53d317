"""GPU solver speed on the paper grid (21 x 40 x 84): crprop.backends.cupy_backend per mode, precision, batch.

Problem: 12C with realistic coefficients from crprop.physics (D_xx, D_pp with random parameters around the
CR-ML base point, ionisation + Coulomb losses and fragmentation on GALPROP's gas maps, GALPROP source
distribution x a broken power-law injection per model). The source is built on the device (as in a
network run), the operator is uploaded by each solve (included in the time), psi stays on the device.

Columns: steps; ms per model-species = wall time of one solve_species call / B (median of --repeats calls, range in
brackets; default 3 calls up to B = 64, 1 above); models-species per s;
bytes per cell-step = the kernels' nominal DRAM traffic (every field array read/written once per kernel:
fast = psi 8 + Q 8 + d R in douglas_z, d 2R in the p sweep, d R + psi 16 in douglas_r = 32 + 4R;
galprop = 3 sweeps x (psi R + Q/s R + psi R) = 9R; R = 4 or 8 bytes; coefficient tables, neighbour
re-reads and the Thomas scratch c', d' are not counted); achieved bandwidth = that traffic / time, against
the measured device-to-device copy bandwidth (bytes read + written). GALPROP reference: crml_base.json's wall
time per model for the 25-isotope CR-ML network on one core (common.galprop_seconds_per_model), per species.
Issue goal: >= 2,000 models/s for 25 isotopes in fast mode fp32, i.e. <= 20 us per model-species.

Usage: python benchmarks/gpu_solver_speed.py [--out DIR] [--sizes 1 64 512 2048 8192] [--repeats N] [--quick]
       python benchmarks/gpu_solver_speed.py --ncu-step   (one Douglas step per precision, for ncu)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import (  # noqa: E402
    copy_bandwidth_gb_s,
    galprop_seconds_per_model,
    nominal_bytes,
    repeat_timings,
    save_results,
    wall_stats,
)

from crprop.backends import cupy_backend as cb  # noqa: E402
from crprop.constants import C_CM_S, MB_CM2  # noqa: E402
from crprop.discretization import build_operator  # noqa: E402
from crprop.grid import Grid  # noqa: E402
from crprop.nuclear.inelastic import sigma_inel_mb  # noqa: E402
from crprop.physics.diffusion import diffusion_coefficient_pp, diffusion_coefficient_xx  # noqa: E402
from crprop.physics.gas import gas_maps  # noqa: E402
from crprop.physics.injection import q_primary  # noqa: E402
from crprop.physics.kinematics import nucleus_kinematics  # noqa: E402
from crprop.physics.losses import loss_coefficients, momentum_loss_rate  # noqa: E402
from crprop.physics.source import source_distribution  # noqa: E402
from crprop.solvers import douglas  # noqa: E402

N_ISOTOPES = 25


def galprop_s_per_species() -> float:
    """GALPROP's crml_base wall time per model (reference json) over its 25 isotopes, s."""
    return galprop_seconds_per_model()[0] / N_ISOTOPES


GOAL_US_PER_MODEL_SPECIES = 1e6 / (2000 * N_ISOTOPES)
TOL = 1e-6


def build_problem(n_models: int, seed: int = 0):
    """(grid, operator of 12C for n_models random parameter sets, S(r,z) (n_r,n_z), q_E (n_E,B))."""
    rng = np.random.default_rng(seed)
    grid = Grid.regular()
    kin = nucleus_kinematics(6, 12, grid.ekin_mev_per_n)
    d0 = 3.25e28 * np.exp(rng.uniform(-0.5, 0.7, n_models))
    delta = rng.uniform(0.35, 0.6, n_models)
    eta = rng.uniform(-2.0, 1.0, n_models)
    v_a = rng.uniform(5.0, 40.0, n_models)
    dxx = diffusion_coefficient_xx(kin.rigidity_mv, kin.beta, d0, delta, eta)
    dpp = diffusion_coefficient_pp(kin.p_mev, dxx, v_a, delta)
    gas = gas_maps(grid.r_kpc, grid.z_kpc, grid.dz_kpc)
    dpdt = momentum_loss_rate(loss_coefficients(kin), gas.n_H_neutral, gas.n_HII)
    sigma = sigma_inel_mb(6, 12, grid.ekin_mev_per_n) * MB_CM2 * (1.0 + 0.11 * 12 ** (1 / 3))  # H + He targets
    gamma = gas.n_H_target[..., None] * (kin.beta * C_CM_S * sigma)[None, None]
    op = build_operator(grid, kin.p_mev, dxx, dpp, dpdt, gamma)
    q_e = q_primary(kin.rigidity_mv, 12, 6, 1.0, rng.uniform(0.2, 1.5, n_models), rng.uniform(2.2, 2.5, n_models),
                    rng.uniform(2.1, 2.4, n_models), rng.uniform(500.0, 3000.0, n_models),
                    rng.uniform(1e5, 8e5, n_models))
    return grid, op, source_distribution(grid.r_kpc, grid.z_kpc), q_e


def device_source(spatial: np.ndarray, q_e: np.ndarray):
    import cupy

    return cupy.asarray(spatial)[:, :, None, None] * cupy.asarray(q_e)[None, None]


def timed_solve(op, q_dev, mode: str, precision: str, repeats: int) -> tuple[dict, object]:
    """(common.wall_stats of ``repeats`` solve_species calls, the last call's result). The kernels run
    asynchronously: the device is synchronised before the first call and at the end of every call, before the
    clock is read."""
    import cupy

    def run():
        res = cb.solve_species(op, q_dev, mode, TOL, 600, None, None, "ignore", precision=precision,
                               keep_on_device=True)
        cupy.cuda.Device().synchronize()  # inside the timing: the solve is done when its kernels are
        return res

    cupy.cuda.Device().synchronize()  # outside the timing: nothing queued before the first call
    res, walls = repeat_timings(run, repeats)
    return wall_stats(walls), res


def speed_table(sizes: list[int], copy_bw: float, repeats: int | None = None) -> list[dict]:
    """One row per B, mode and precision; ``repeats`` timed solves per row (None: 3 up to B = 64, else 1)."""
    import cupy

    rows = []
    for n_models in sizes:
        try:
            grid, op, spatial, q_e = build_problem(n_models)
            q_dev = device_source(spatial, q_e)
        except (MemoryError, cupy.cuda.memory.OutOfMemoryError) as exc:
            print(f"B={n_models}: problem does not fit ({exc})", flush=True)
            break
        cells = int(np.prod(grid.shape))
        for mode in ("fast", "galprop"):
            for precision in ("float64", "float32"):
                try:
                    timing, res = timed_solve(op, q_dev, mode, precision,
                                              repeats or (3 if n_models <= 64 else 1))
                except cupy.cuda.memory.OutOfMemoryError as exc:
                    print(f"B={n_models} {mode} {precision}: out of memory ({exc})", flush=True)
                    continue
                sec = timing["wall_s"]
                per = sec / n_models
                traffic = nominal_bytes(mode, precision) * cells * res.steps * n_models
                row = dict(mode=mode, precision=precision, B=n_models, steps=res.steps,
                           ms_per_model_species=per * 1e3, model_species_per_s=1.0 / per,
                           models_per_s_25_isotopes=1.0 / per / N_ISOTOPES,
                           nominal_bytes_per_cell_step=nominal_bytes(mode, precision),
                           achieved_gb_s=traffic / sec / 1e9, fraction_of_copy_bw=traffic / sec / 1e9 / copy_bw,
                           speedup_vs_galprop_core=galprop_s_per_species() / per,
                           max_residual=float(res.residual.max()), converged=bool(res.converged.all()),
                           **timing)
                rows.append(row)
                print(json.dumps(row), flush=True)
                del res
        del q_dev
        cupy.get_default_memory_pool().free_all_blocks()
    return rows


def kernel_profile(n_models: int, precision: str, reps: int = 20) -> dict:
    """Per-kernel time (median of ``reps``, CUDA events) of the Douglas and CN kernels, and nominal GB/s."""
    import cupy

    grid, op, spatial, q_e = build_problem(n_models)
    q_dev = device_source(spatial, q_e)
    taus = douglas.pseudo_time_cycle(op)
    ws = cb.workspace(cupy, op.shape, precision, taus.shape[0])
    targs = ws.load(op)
    ws.taus.set(taus)
    ws.q[...] = q_dev
    ws.qnorm[...] = cupy.sqrt((ws.q * ws.q).sum(axis=(0, 1)))
    ws.psi[...] = 0.5 * q_dev * ws.taus[0][None, None]  # of the order of the steady state
    cb._set_scale(ws, precision, None)
    ws.d[...] = (ws.psi / ws.sc[None, None]).astype(ws.d.dtype)
    ws.qs[...] = (ws.q / ws.sc[None, None]).astype(ws.qs.dtype)
    ws.norm2[...] = 0.0
    check_state = cupy.zeros(8, np.int32)
    # per-model stop flags: the profiled kernels get `never` (no model frozen, so every thread works); the check
    # writes its own flags (tol 0 freezes no model either)
    never, check_done, check_step = (cupy.zeros(n_models, np.int32) for _ in range(3))
    k = cb.CudaKernels(op.shape, precision, cb.OPTIONS.unroll)
    tau, free = ws.taus[3], ws.no_state
    r = 4 if precision == "float32" else 8
    cells = int(np.prod(grid.shape)) * n_models

    def step() -> None:
        cb._douglas_z(k, targs, tau, ws.sc, ws.psi, ws.q, ws.d, ws.norm2, free, never)
        k.check(ws.norm2, ws.qnorm, 0.0, ws.relres, check_state, check_done, check_step)
        k.sweep("p", targs, tau, 0.0, 0, ws.srat, ws.d, ws.d, 0, 0.0, 0, 0, free, ws.d)
        k.douglas_r(targs, tau, ws.sc, ws.d, ws.psi, free, never)

    def cn(d: str, post: int):
        return lambda: k.sweep(d, targs, tau, 1e12, 1, ws.srat, ws.d, ws.qs, 1, 1e12, 1, post, free, ws.d)

    calls = {
        "douglas_z": (lambda: k.douglas_z(targs, tau, ws.sc, ws.psi, ws.q, ws.d, ws.norm2, free, never), 16 + r),
        "douglas_res": (lambda: k.douglas_res(targs, tau, ws.sc, ws.psi, ws.q, ws.d, ws.norm2, free, never), 16 + r),
        "sweep_z": (lambda: k.sweep("z", targs, tau, 0.0, 0, ws.srat, ws.d, ws.d, 0, 0.0, 0, 0, free, ws.d), 2 * r),
        "douglas_check": (lambda: k.check(ws.norm2, ws.qnorm, 0.0, ws.relres, check_state, check_done, check_step), 0),
        "sweep_p": (lambda: k.sweep("p", targs, tau, 0.0, 0, ws.srat, ws.d, ws.d, 0, 0.0, 0, 0, free, ws.d), 2 * r),
        "douglas_r": (lambda: k.douglas_r(targs, tau, ws.sc, ws.d, ws.psi, free, never), 16 + r),
        "douglas_step": (step, 32 + 4 * r),
        "cn_sweep_z": (cn("z", 1), 3 * r),
        "cn_sweep_p": (cn("p", 0), 3 * r),
        "cn_sweep_r": (cn("r", 1), 3 * r),
    }
    out = {}
    for label, (fn, nbytes) in calls.items():
        times = []
        for _ in range(reps):
            check_state[...] = 0
            start, stop = cupy.cuda.Event(), cupy.cuda.Event()
            start.record()
            fn()
            stop.record()
            stop.synchronize()
            times.append(cupy.cuda.get_elapsed_time(start, stop) * 1e-3)
        sec = float(np.median(times))
        out[label] = dict(us=sec * 1e6, us_per_model=sec * 1e6 / n_models,
                          nominal_gb_s=nbytes * cells / sec / 1e9 if nbytes else None)
    attrs = {}
    for name in ("douglas_z", "douglas_res", "sweep_p", "douglas_r", "sweep_z", "sweep_r"):
        f = k._fn[name]
        attrs[name] = dict(registers=f.num_regs, local_bytes=f.local_size_bytes)
    return dict(B=n_models, precision=precision, unroll=list(cb.OPTIONS.unroll),
                fused_residual=cb.OPTIONS.fused_residual, kernels=out, attributes=attrs)


def variants(n_models: int) -> list[dict]:
    """fast-mode time per model-species for kernel variants: the (z, r, p) unroll choices (registers vs
    local memory) and the fused or split residual + z sweep. Leaves OPTIONS at the fastest in float32."""
    grid, op, spatial, q_e = build_problem(n_models)
    q_dev = device_source(spatial, q_e)
    rows = []
    for unroll, fused in (((1, 1, 0), True), ((1, 1, 0), False), ((0, 0, 0), False), ((1, 1, 1), False),
                          ((0, 0, 0), True)):
        cb.set_defaults(unroll=unroll, fused_residual=fused)
        for precision in ("float64", "float32"):
            timed_solve(op, q_dev, "fast", precision, 1)  # compile
            timing, res = timed_solve(op, q_dev, "fast", precision, 2)
            sec = timing["wall_s"]
            rows.append(dict(unroll=list(unroll), fused_residual=fused, precision=precision, B=n_models,
                             steps=res.steps, us_per_model_species=sec / n_models * 1e6,
                             us_per_model_species_step=sec / n_models / res.steps * 1e6))
            print(json.dumps(rows[-1]), flush=True)
    best = min((r for r in rows if r["precision"] == "float32"), key=lambda r: r["us_per_model_species"])
    cb.set_defaults(unroll=tuple(best["unroll"]), fused_residual=best["fused_residual"])
    print(f"fastest variant in float32: unroll {best['unroll']}, fused_residual {best['fused_residual']}", flush=True)
    return rows


def accuracy(n_models: int = 8) -> dict:
    """Paper-grid problem: cupy fp64 / fp32 against the numba backend (fast and galprop)."""
    from crprop.solvers import solve_species

    _, op, spatial, q_e = build_problem(n_models, seed=7)
    q = spatial[:, :, None, None] * q_e[None, None]
    out = {}
    for mode in ("fast", "galprop"):
        ref = solve_species(op, q, mode=mode, backend="numba", tol=TOL, on_nonconverged="ignore")
        scale = np.abs(ref.psi).max(axis=(0, 1))
        for precision in ("float64", "float32"):
            got = cb.solve_species(op, q, mode, TOL, 600, None, None, "ignore", precision=precision)
            err = np.abs(got.psi - ref.psi).max(axis=(0, 1))
            out[f"{mode}_{precision}"] = dict(
                steps=(got.steps, ref.steps),
                max_rel_global=float(np.abs(got.psi - ref.psi).max() / np.abs(ref.psi).max()),
                max_rel_per_energy_slice=float(np.max(err / np.where(scale > 0, scale, 1.0))),
                residual_gpu=float(got.residual.max()), residual_numba=float(ref.residual.max()))
            print(mode, precision, json.dumps(out[f"{mode}_{precision}"]), flush=True)
    return out


def _fmt(x: float | None) -> str:
    return "" if x is None else f"{x:.0f}"


def markdown(meta: dict, rows: list[dict], prof: list[dict], var: list[dict], acc: dict) -> str:
    lines = [f"# GPU solver speed ({meta['device']}, CuPy {meta['cupy']})", "",
             f"Paper grid {meta['grid']}, 12C, tol {TOL:g}; copy bandwidth {meta['copy_gb_s']:.0f} GB/s "
             f"(read + write). GALPROP: {galprop_s_per_species():.2f} s per model-species (one core). "
             f"Goal: <= {GOAL_US_PER_MODEL_SPECIES:.0f} us per model-species (fast, fp32). "
             f"Kernel options: {meta.get('options')}. ms / model-species: median of the row's timed solves "
             "(range in brackets).", "",
             "| mode | precision | B | steps | ms / model-species | model-species / s | models / s (25 iso) "
             "| nominal B / cell-step | GB/s | of copy BW | x GALPROP core | max residual |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lo, hi = (r[k] / r["B"] * 1e3 for k in ("wall_min_s", "wall_max_s"))
        lines.append(f"| {r['mode']} | {r['precision']} | {r['B']} | {r['steps']} | {r['ms_per_model_species']:.4g} "
                     f"({lo:.4g}–{hi:.4g}, {r['repeats']}x) | {r['model_species_per_s']:.4g} "
                     f"| {r['models_per_s_25_isotopes']:.4g} "
                     f"| {r['nominal_bytes_per_cell_step']} | {r['achieved_gb_s']:.0f} "
                     f"| {100 * r['fraction_of_copy_bw']:.0f} % | {r['speedup_vs_galprop_core']:.3g} "
                     f"| {r['max_residual']:.2g} |")
    if var:
        lines += ["", "Kernel variants (fast mode): unroll (z, r, p) 1 = Thomas loop unrolled into registers; "
                  "fused = residual and z sweep in one kernel", "",
                  "| unroll | fused | precision | B | steps | us / model-species | us / model-species-step |",
                  "|---|---|---|---|---|---|---|"]
        lines += [f"| {v['unroll']} | {v['fused_residual']} | {v['precision']} | {v['B']} | {v['steps']} "
                  f"| {v['us_per_model_species']:.1f} | {v['us_per_model_species_step']:.3f} |" for v in var]
    for p in prof:
        lines += ["", f"Kernel times, B = {p['B']}, {p['precision']}, unroll {p['unroll']}, "
                  f"fused {p['fused_residual']}", "",
                  "| kernel | us | us / model | nominal GB/s |", "|---|---|---|---|"]
        lines += [f"| {k} | {v['us']:.0f} | {v['us_per_model']:.3f} | {_fmt(v['nominal_gb_s'])} |"
                  for k, v in p["kernels"].items()]
        lines.append("")
        lines.append("registers / local bytes: " + ", ".join(f"{k} {a['registers']}/{a['local_bytes']}"
                                                              for k, a in p["attributes"].items()))
    if acc:
        lines += ["", "Accuracy on the paper grid (B = 8) against the numba backend", "",
                  "| case | steps (gpu, numba) | max rel (global) | max rel (per energy slice) | residual gpu | "
                  "residual numba |", "|---|---|---|---|---|---|"]
        lines += [f"| {k} | {v['steps']} | {v['max_rel_global']:.2e} | {v['max_rel_per_energy_slice']:.2e} "
                  f"| {v['residual_gpu']:.2e} | {v['residual_numba']:.2e} |" for k, v in acc.items()]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results")
    ap.add_argument("--sizes", type=int, nargs="+", default=[1, 64, 512, 2048, 8192])
    ap.add_argument("--repeats", type=int, default=None, help="timed solves per speed-table row (median and range; "
                    "default 3 up to B = 64, 1 above)")
    ap.add_argument("--quick", action="store_true", help="no unroll variants, no accuracy check")
    ap.add_argument("--ncu-step", action="store_true", help="only one Douglas step per precision (for ncu)")
    args = ap.parse_args()
    import cupy

    if args.ncu_step:
        for precision in ("float64", "float32"):
            kernel_profile(2048, precision, reps=1)
        return
    props = cupy.cuda.runtime.getDeviceProperties(0)
    meta = dict(device=props["name"].decode(), cupy=cupy.__version__,  # the rest of the machine: save_results
                grid=list(Grid.regular().shape), tol=TOL, copy_gb_s=copy_bandwidth_gb_s(),
                galprop_s_per_model_species=galprop_s_per_species(),
                goal_us_per_model_species=GOAL_US_PER_MODEL_SPECIES)
    print(json.dumps(meta), flush=True)
    for precision in ("float64", "float32"):  # compile outside the timings
        _, op, spatial, q_e = build_problem(1)
        for mode in ("fast", "galprop"):
            timed_solve(op, device_source(spatial, q_e), mode, precision, 1)
    var = [] if args.quick else variants(2048)
    meta["options"] = dict(unroll=list(cb.OPTIONS.unroll), fused_residual=cb.OPTIONS.fused_residual)
    rows = speed_table(args.sizes, meta["copy_gb_s"], args.repeats)
    prof = [kernel_profile(2048, p) for p in ("float64", "float32")]
    for p in prof:
        print(json.dumps(p), flush=True)
    acc = {} if args.quick else accuracy()
    save_results("gpu_solver_speed", markdown(meta, rows, prof, var, acc),
                 dict(meta=meta, rows=rows, kernel_profile=prof, unroll_variants=var, accuracy=acc),
                 out_dir=Path(args.out))


if __name__ == "__main__":
    main()
