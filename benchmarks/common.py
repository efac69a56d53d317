"""Shared pieces of the benchmark scripts: a realistic one-species problem and GALPROP's timing."""

from __future__ import annotations

import json
import os
import platform
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

import numpy as np

from crprop.discretization import build_operator
from crprop.grid import Grid
from crprop.physics.diffusion import diffusion_coefficient_pp, diffusion_coefficient_xx
from crprop.physics.gas import gas_maps
from crprop.physics.injection import q_primary
from crprop.physics.kinematics import nucleus_kinematics
from crprop.physics.losses import loss_coefficients, momentum_loss_rate
from crprop.physics.source import source_distribution

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
N_ISOTOPES = 25
_T = TypeVar("_T")


def shared_dir() -> Path | None:
    env = os.environ.get("CRNET_SHARED")
    for cand in ([Path(env)] if env else []) + [REPO.parent / "shared"]:
        if cand.is_dir():
            return cand
    return None


def galprop_reference_dir() -> Path:
    """../shared/reference/galprop (or $CRNET_SHARED's); exits with a message when it is not there."""
    root = shared_dir()
    if root is None:
        raise SystemExit("../shared (or $CRNET_SHARED) with reference/galprop is needed")
    return root / "reference" / "galprop"


def galprop_seconds_per_model() -> tuple[float, str]:
    """(wall seconds per crml_base model, where the number came from): GALPROP v54's own run, read from
    reference/galprop/crml_base/crml_base.json (``wall_time_s``, one OpenMP thread; the README there re-timed it
    alone at 32.0 s, +-20 % as its runs shared a 2-core VM). Every benchmark compares with this one number; there is
    no built-in fallback (until session 13 a missing file silently gave 32.0 s while others used 28.5 s)."""
    js = galprop_reference_dir() / "crml_base" / "crml_base.json"
    if not js.exists():
        raise SystemExit(f"{js} is needed for the GALPROP timing (benchmarks/gpu_session.sh prepare carries it)")
    info = json.loads(js.read_text())
    return float(info["wall_time_s"]), f"{js} (wall_time_s, {info.get('omp_threads', '?')} OpenMP thread(s))"


class PeakRSS:
    """Peak resident memory of this process inside a ``with`` block, MiB: ``peak_mib`` (the process's high-water mark
    during the block) and ``increase_mib`` (peak minus the resident size at entry, what the block itself needed).

    On Linux the high-water mark is reset at entry (``/proc/self/clear_refs`` 5), so the peak is the block's own,
    including memory numba and torch allocate outside Python. Elsewhere ``peak_mib`` is the process's peak since its
    start (``resource.ru_maxrss``) and ``exact`` is False; a table says which through :func:`peak_rss_scope`."""

    def __enter__(self) -> PeakRSS:
        try:
            Path("/proc/self/clear_refs").write_text("5")
            self.exact = True
        except OSError:
            self.exact = False
        self.start_mib = _status_mib("VmRSS")
        return self

    def __exit__(self, *exc) -> None:
        if self.exact:
            self.peak_mib = _status_mib("VmHWM")
        else:
            import resource

            self.peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
        self.increase_mib = max(self.peak_mib - (self.start_mib or 0.0), 0.0)


PEAK_RSS_RESET = "reset per row"
PEAK_RSS_LIFETIME = ("not reset: /proc/self/clear_refs could not be written, so it is the process's peak since it "
                     "started, not the row's own")


def peak_rss_scope(rows: Sequence[dict]) -> str:
    """What a table's peak-RSS column is, from its rows' ``peak_rss_exact`` (:class:`PeakRSS` ``exact``; a row
    without the key counts as not reset): :data:`PEAK_RSS_RESET` when every row's high-water mark was reset at the
    row's start, else :data:`PEAK_RSS_LIFETIME` (naming the rows when only some were)."""
    exact = [bool(r.get("peak_rss_exact", False)) for r in rows if "peak_rss_mib" in r]
    if all(exact):
        return PEAK_RSS_RESET
    if not any(exact):
        return PEAK_RSS_LIFETIME
    return f"{PEAK_RSS_LIFETIME}, in {exact.count(False)} of {len(exact)} rows; the others {PEAK_RSS_RESET}"


FIXED_LADDER = "fixed ladder, not converged"
"""The converged cell of a `galprop`-mode row: GALPROP's time ladder stops short of the steady state by design."""


def converged_cell(mode: str, n_nonconverged: int, n_models: int) -> str:
    """A timing table's "converged" cell: :data:`FIXED_LADDER` for `galprop` mode, else "yes" when every model
    reached its tolerance and "no (n of N)" when ``n_nonconverged`` of ``n_models`` did not."""
    if mode == "galprop":
        return FIXED_LADDER
    return "yes" if n_nonconverged == 0 else f"no ({n_nonconverged} of {n_models})"


def nonconverged_warning(counts: Iterable[tuple[str, int, int]], subject: str = "model",
                         entry: str = "{label} ({n} of {total})", opening: str = " in ",
                         closing: str = "; their times are for non-converged solves.") -> list[str]:
    """The lines a timing table ends with when some rows timed non-converged solves: none when every ``(label, n,
    total)`` of ``counts`` has n = 0, else a blank line and "**Warning: not every <subject> converged**" followed by
    ``opening``, each row with n > 0 as ``entry`` (a format of label, n, total) joined by "; ", and ``closing``.
    The caller leaves out the rows whose non-convergence is by design (`galprop` mode, :data:`FIXED_LADDER`) and
    those without a count (a row that failed)."""
    bad = [entry.format(label=label, n=n, total=total) for label, n, total in counts if n]
    if not bad:
        return []
    return ["", f"**Warning: not every {subject} converged**{opening}" + "; ".join(bad) + closing]


TINY_GRID = {"dr_kpc": 4.0, "dz_kpc": 1.3, "ekin_factor": 3.0}
"""The warm-ups' tiny grid (GalaxySetup.with_changes): the tests' dr 4 kpc, dz 1.3 kpc, Ekin factor 3."""


def warm_up(*runs: Callable[[], object]) -> float:
    """Call each of ``runs`` once, every warning silenced: a solve on a tiny grid (:data:`TINY_GRID`) before the
    timings, so that JIT / kernel compilation falls outside them. Returns the seconds it took."""
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for run in runs:
            run()
    return time.perf_counter() - t0


def warm_up_propagate(setup, params, backend: str, modes: Sequence[str] = ("fast",)) -> float:
    """:func:`warm_up` with one crprop.propagate call per mode of ``modes`` on ``setup`` made tiny
    (:data:`TINY_GRID`), for ``params`` (prior not checked); returns the seconds it took."""
    from functools import partial

    from crprop.propagate import propagate

    tiny = setup.with_changes(**TINY_GRID)
    return warm_up(*(partial(propagate, tiny, params, mode=mode, backend=backend, check_prior=False)
                     for mode in modes))


def _status_mib(key: str) -> float | None:
    """A memory line of /proc/self/status (kB, i.e. KiB) in MiB; None where there is no /proc."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        return None
    return None


def repeat_timings(run: Callable[[], _T], repeats: int) -> tuple[_T, list[float]]:
    """Call ``run()`` ``repeats`` times: (its last result, the wall times in s). Report the median and the range
    (:func:`wall_stats`). The clock is read as soon as ``run`` returns: a ``run`` that queues GPU work must
    synchronise before it returns (and the device be idle before the first call)."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    walls: list[float] = []
    result = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = run()
        walls.append(time.perf_counter() - t0)
    return result, walls


def wall_stats(walls: Sequence[float]) -> dict[str, float | int]:
    """The median of repeated wall times and their range, s: ``wall_s``, ``wall_min_s``, ``wall_max_s``, and
    ``repeats`` (how many): the row keys of every timing table (solver, network, training, halo groups,
    likelihood, the GPU network check; scan_speed's over its timed batches, one per Metropolis step)."""
    if not walls:
        raise ValueError("no wall times")
    return {"wall_s": float(np.median(walls)), "wall_min_s": float(min(walls)), "wall_max_s": float(max(walls)),
            "repeats": len(walls)}


def device_pool_mib() -> float | None:
    """MiB CuPy's default memory pool holds (``total_bytes``: blocks in use plus those it caches for reuse), or None
    when CuPy was never imported (a CPU run: this never imports CuPy itself). The pool keeps every block until it is
    emptied, so after emptying it before a run (crprop.backends.release_cached_device_memory) this is the run's
    device-memory high-water mark."""
    cupy = sys.modules.get("cupy")
    if cupy is None:
        return None
    return cupy.get_default_memory_pool().total_bytes() / 2**20


def carbon_problem(grid: Grid, n_models: int, seed: int = 0):
    """12C in the paper's Galaxy for B models scattered +-20 % around crml_base: (operator, source)."""
    rng = np.random.default_rng(seed)
    kin = nucleus_kinematics(6, 12, grid.ekin_mev_per_n)
    gas = gas_maps(grid.r_kpc, grid.z_kpc, grid.dz_kpc)
    d0 = 3.25e28 * rng.uniform(0.8, 1.2, n_models)
    delta = 0.478 * rng.uniform(0.8, 1.2, n_models)
    eta = -1.55 * rng.uniform(0.8, 1.2, n_models)
    v_a = 34.9 * rng.uniform(0.8, 1.2, n_models)
    dxx = diffusion_coefficient_xx(kin.rigidity_mv, kin.beta, d0, delta, eta)
    dpp = diffusion_coefficient_pp(kin.p_mev, dxx, v_a, delta)
    dpdt = momentum_loss_rate(loss_coefficients(kin), gas.n_H_neutral, gas.n_HII)
    frag = kin.beta * 2.998e10 * 280e-27 * 1.3  # ~ sigma_inel(C+p) with He, s^-1 per cm^-3
    gamma = gas.n_H_target[..., None] * frag[None, None]
    op = build_operator(grid, kin.p_mev, dxx, dpp, dpdt, gamma)
    q_e = q_primary(kin.rigidity_mv, 12, 6, 3600.0, 0.28, 2.42, 2.12, 880.0, 4.67e5)
    if q_e.ndim == 1:
        q_e = q_e[:, None]
    src = source_distribution(grid.r_kpc, grid.z_kpc)
    q = src[:, :, None, None] * np.broadcast_to(q_e, (grid.shape[2], n_models))[None, None]
    return op, np.ascontiguousarray(q)


def save_results(stem: str, text: str, payload: dict, out_dir: Path | None = None, echo: bool = True) -> str:
    """Print a result table (unless not ``echo``: a script that rewrites its results after every row prints only
    the last) and write it to <out_dir>/<stem>.md (default benchmarks/results), with ``payload`` as <stem>.json;
    the .md ends with the command, commit and thread counts of :func:`machine` and the .json holds it as
    ``provenance``, so neither needs the machine written into it again. Returns the .md text."""
    where = machine()
    text = (f"{text}\n\nMeasured with `{where['command']}` at commit {where['commit'][:10]}"
            f"{' (uncommitted changes)' if where['dirty_tree'] else ''}; numba threads {where.get('numba_threads')}, "
            f"{where['cores']} cores{', GPU ' + where['gpu'] if 'gpu' in where else ''}"
            f"{', load average ' + ' / '.join(f'{x:.2f}' for x in where['loadavg']) if where.get('loadavg') else ''}.")
    payload = {**payload, "provenance": where}
    if echo:
        print(text)
    out_dir = RESULTS if out_dir is None else Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{stem}.md").write_text(text)
    (out_dir / f"{stem}.json").write_text(json.dumps(payload, indent=1))
    return text


def machine() -> dict:
    """Where and from what a result was measured: CPU, cores and the threads numba / torch use, the command line,
    the git commit (and whether the tree had uncommitted changes), the GPU if CuPy sees one, and the load averages
    (1, 5, 15 min) when the results are written (``loadavg``; None where the OS has none): a CPU shared with other
    jobs slows every timing."""
    from crnet.provenance import code_version

    # results files the benchmarks themselves rewrite do not make the code differ from the commit
    version = code_version(exclude=("benchmarks/results",))
    info = {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
            "python": platform.python_version(), "command": " ".join(sys.argv),
            "commit": version["git_commit"] or "", "dirty_tree": bool(version["git_dirty"])}
    try:
        info["loadavg"] = [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):  # no getloadavg (Windows) or none available
        info["loadavg"] = None
    try:
        import numba

        info["numba_threads"] = numba.get_num_threads()
    except ImportError:
        pass
    if "torch" in sys.modules:
        info["torch_threads"] = sys.modules["torch"].get_num_threads()
    if "cupy" in sys.modules:
        try:
            cupy = sys.modules["cupy"]
            info["gpu"] = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)["name"].decode()
        except Exception:  # noqa: BLE001 - a GPU name is informative only
            pass
    return info


def nominal_bytes(mode: str, precision: str) -> int:
    """Nominal DRAM bytes per cell and solver step of the cupy kernels, every field read/written once per kernel
    (R = 4 or 8 bytes): fast = psi 8 + Q 8 + d R (douglas_z) + d 2R (p sweep) + d R + psi 16 (douglas_r) = 32 + 4R;
    galprop = 3 sweeps x (psi R + Q/psi_ref R + psi R) = 9R. Coefficient tables, neighbour re-reads and the
    Thomas scratch c', d' are not counted."""
    r = 4 if precision == "float32" else 8
    return 32 + 4 * r if mode == "fast" else 9 * r


def copy_bandwidth_gb_s(n_bytes: int = 2 << 30, reps: int = 10) -> float:
    """Device-to-device copy bandwidth of the current CuPy device, (bytes read + written) / time, GB/s."""
    import cupy

    a = cupy.ones(n_bytes // 8)
    b = cupy.empty_like(a)
    b[...] = a
    start, stop = cupy.cuda.Event(), cupy.cuda.Event()
    start.record()
    for _ in range(reps):
        b[...] = a
    stop.record()
    stop.synchronize()
    sec = cupy.cuda.get_elapsed_time(start, stop) / 1e3 / reps
    del a, b
    return 2 * n_bytes / sec / 1e9
