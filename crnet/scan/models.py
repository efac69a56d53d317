"""What a scan evaluates: parameters -> (fluxes at the Sun, chi^2, profiled normalisations).

:class:`PropagateModel` is the real thing (crprop.propagate + crnet.likelihood) with per-chain solver
warm starts; :class:`FunctionModel` wraps any ``simulate`` function (an analytic stand-in for tests,
benchmarks of the pipeline, or another solver) behind the same interface.
"""

from __future__ import annotations

import functools
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np

from crnet.store import NORM_NAMES
from crprop.backends import array_module


@dataclass
class Evaluation:
    """Result of evaluating B models.

    flux : (B, n_species, n_E) fluxes at the Sun, m^-2 s^-1 sr^-1 (GeV/n)^-1, before normalisations.
    chi2 : (B,) chi^2_tot with the profiled normalisations; norms : (B, 4) in NORM_NAMES order.
    converged : (B,) solver flag; residual : (B,) largest relative residual.
    solver_steps : total solver iterations of the call (warm-start accounting; 0 if unknown).
    residuals : (B, n_points) normalised data residuals at the profiled normalisations (sum of squares =
        chi2), only when asked for (``evaluate(..., residuals=True)``; least-squares fits), else None.
    """

    flux: np.ndarray
    chi2: np.ndarray
    norms: np.ndarray
    converged: np.ndarray
    residual: np.ndarray
    solver_steps: int = 0
    residuals: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.flux = np.asarray(self.flux)
        self.chi2 = np.asarray(self.chi2, dtype=np.float64).reshape(-1)
        n = self.chi2.size
        self.norms = np.asarray(self.norms, dtype=np.float64).reshape(n, len(NORM_NAMES))
        self.converged = np.asarray(self.converged, dtype=bool).reshape(n)
        self.residual = np.asarray(self.residual, dtype=np.float64).reshape(n)
        if self.flux.ndim != 3 or self.flux.shape[0] != n:
            raise ValueError(f"Evaluation.flux must be ({n}, n_species, n_E), got {self.flux.shape}")


class ScanModel(Protocol):
    """Interface the scan runner drives (see :class:`PropagateModel`)."""

    species: list[str]
    ekin_gev_per_n: np.ndarray

    def store_fields(self) -> dict[str, Any]:
        """{'grid': dict, 'cross_sections': str, 'solver_mode': str, 'backend': str, 'dataset': str}."""
        ...

    def evaluate(self, params: np.ndarray, slots: np.ndarray | None = None) -> Evaluation:
        """Evaluate (B, 10) parameters (PARAM_NAMES columns, breaks in MV); ``slots`` = chain of each row."""
        ...

    def commit(self, slots: np.ndarray, accepted: np.ndarray) -> None:
        """The rows of the last evaluate() with ``accepted`` became the states of chains ``slots``."""
        ...


@dataclass
class FunctionModel:
    """A ``simulate(params (B, 10)) -> Evaluation`` function as a ScanModel (no warm starts).

    species, ekin_gev_per_n : labels and energies (GeV/n) of the flux rows ``simulate`` returns.
    fields : store attributes (grid, cross_sections, solver_mode, backend, dataset) to record.
    """

    simulate: Callable[[np.ndarray], Evaluation]
    species: list[str]
    ekin_gev_per_n: np.ndarray
    fields: dict[str, Any] = field(default_factory=dict)

    def store_fields(self) -> dict[str, Any]:
        base = {"grid": {"model": "function"}, "cross_sections": "none", "solver_mode": "function",
                "backend": "numpy", "dataset": "analytic"}
        return {**base, **self.fields}

    def evaluate(self, params: np.ndarray, slots: np.ndarray | None = None) -> Evaluation:
        ev = self.simulate(np.asarray(params, dtype=np.float64))
        if not isinstance(ev, Evaluation):
            raise TypeError(f"simulate must return an Evaluation, got {type(ev).__name__}")
        return ev

    def commit(self, slots: np.ndarray, accepted: np.ndarray) -> None:
        return None


class IdleStretchWarning(UserWarning):
    """A GridConfig made in Python with z_stretch_factor / dz_max_kpc but no z_uniform_half_kpc: the z grid is
    GALPROP's uniform one and those options change nothing (the command line and [scan.grid] refuse them)."""


@dataclass
class GridConfig:
    """Overrides of the paper setup's grid (None = the CR-ML galdef's value): r and z steps in kpc,
    energy factor (ratio of consecutive kinetic energies per nucleon), and crprop's stretched halo
    (crprop.galaxy.GalaxySetup.grid): the galdef's z step up to |z| = z_uniform_half_kpc (kpc), then each step
    z_stretch_factor times the previous one, up to dz_max_kpc (kpc). None/None/None: GALPROP's uniform z grid.
    loss_scheme: the momentum-loss stencil (crprop.discretization.LOSS_SCHEMES; None = GALPROP's 'upwind1').
    half_lives: 'galprop' (None: GALPROP's tables, 10Be 1.60 Myr) or 'measured' (crprop.nuclear.decay.
    MEASURED_HALF_LIVES_YR: 10Be 1.387 Myr).

    Checked when made (:meth:`check_options`, :meth:`check_stretched_halo`, :meth:`check_halo`): the stretched halo
    must reach dz (dz_max_kpc not set is GalaxySetup's 1.0 kpc, whatever dz), and the z lattice must leave an
    interior z node for the smallest halo of the prior box (crprop.params.PRIOR_BOX z_halo_kpc, 1 kpc), so that a
    config that cannot run is refused before any file is written. Where a user's values come in (command-line
    options, the pipeline's [scan.grid]), :meth:`check_stretch_options` also refuses z_stretch_factor and dz_max_kpc
    without z_uniform_half_kpc (walk-through by helper-87, session 21); a GridConfig made with them in Python warns
    (:class:`IdleStretchWarning`) instead, since records of earlier runs, remade here, may hold such a value."""

    dr_kpc: float | None = None
    dz_kpc: float | None = None
    ekin_factor: float | None = None
    z_uniform_half_kpc: float | None = None
    z_stretch_factor: float | None = None
    dz_max_kpc: float | None = None
    loss_scheme: str | None = None
    half_lives: str | None = None

    STRETCH_SHAPE_FIELDS: ClassVar[tuple[str, ...]] = ("z_stretch_factor", "dz_max_kpc")
    """Fields that shape the stretched halo beyond z_uniform_half_kpc (unused without it)."""
    STRETCH_FIELDS: ClassVar[tuple[str, ...]] = ("z_uniform_half_kpc",) + STRETCH_SHAPE_FIELDS
    """Fields of the stretched halo (crprop.galaxy.GalaxySetup.grid)."""

    def __post_init__(self) -> None:
        self.check_options(vars(self))
        if self.half_lives == "galprop":  # one spelling of the default, so that cache keys and resumes agree
            self.half_lives = None
        # An option given explicitly at the paper galdef's value is the default: one spelling (None), so that
        # `--dr 1 --loss-scheme upwind1` and no options give the same settings(), cache keys and setup checks.
        paper = paper_grid_defaults()
        for name, default in paper.items():
            if getattr(self, name) == default:
                setattr(self, name, None)
        self.check_stretched_halo(vars(self), self.dz_kpc if self.dz_kpc is not None else paper["dz_kpc"])
        self._check_halo_interior()
        try:  # a Python caller's idle stretch option is told, not refused: records of earlier runs may hold one
            self.check_stretch_options(vars(self))
        except ValueError as exc:
            warnings.warn(f"GridConfig: {exc}; it has no effect on this grid", IdleStretchWarning, stacklevel=3)

    @staticmethod
    def check_options(values: dict[str, Any]) -> None:
        """Each option of ``values`` (GridConfig fields, None = not given) on its own, with crprop's own checks of
        these values (crprop.grid, crprop.discretization; a zero step was a ZeroDivisionError deep in the grid):
        steps finite and > 0 kpc, energy factor > 1, stretch factor in (1, Z_MAX_STEP_RATIO], a known loss scheme
        and half-lives. Not the stretched halo against dz: commands whose dz is another galdef's or a store's
        (crnet simulate, feedback, evaluate) check that on the merged grid. ValueError naming the field."""
        from crprop.discretization import check_loss_scheme
        from crprop.grid import check_energy_factor, check_positive, check_stretch_factor
        from crprop.physics.gas import check_gas_z_step

        _check_half_lives(values.get("half_lives"))
        for name in ("dr_kpc", "dz_kpc", "z_uniform_half_kpc", "dz_max_kpc"):
            if values.get(name) is not None:
                check_positive(name, values[name])
        if values.get("dz_kpc") is not None:
            check_gas_z_step("dz_kpc", values["dz_kpc"])
        for name, check in (("ekin_factor", check_energy_factor), ("z_stretch_factor", check_stretch_factor),
                            ("loss_scheme", check_loss_scheme)):
            if values.get(name) is not None:
                check(values[name])

    @staticmethod
    def check_stretch_options(values: Mapping[str, Any]) -> None:
        """z_stretch_factor and dz_max_kpc of ``values`` (GridConfig fields as a user gave them, None = not given)
        shape the halo beyond z_uniform_half_kpc: without it (GALPROP's uniform z grid) a value other than
        GalaxySetup's default is refused, naming the field, since it would change nothing while a store or an output
        file recorded it as applied (walk-through by helper-87, session 21). GalaxySetup's defaults themselves (1.15,
        1.0 kpc) pass: they change nothing either way.

        Refused where a user's values come in (crnet scan / fit options, crnet simulate, the pipeline's [scan.grid]);
        __post_init__ only warns (IdleStretchWarning): a GridConfig is also made from what earlier runs recorded
        (crnet.scan.models.normalised_grid, stage markers, stores), which such an option, accepted before session 21,
        may hold, and a record that could not be made would not be normalised for the comparison with the current
        settings."""
        defaults = paper_grid_defaults()
        shaping = [name for name in GridConfig.STRETCH_SHAPE_FIELDS
                   if values.get(name) is not None and values[name] != defaults[name]]
        if values.get("z_uniform_half_kpc") is not None or not shaping:
            return
        named, several = " and ".join(shaping), len(shaping) > 1
        raise ValueError(f"{shaping[0]} = {values[shaping[0]]:g} needs z_uniform_half_kpc: {named} "
                         f"{'shape' if several else 'shapes'} the stretched halo, which z_uniform_half_kpc turns on "
                         "(uniform z steps up to that |z|, wider beyond); without it the z grid is uniform and "
                         f"{named} would change nothing. Set z_uniform_half_kpc or leave {'them' if several else 'it'} "
                         "out")

    @staticmethod
    def check_stretched_halo(values: Mapping[str, Any], dz_kpc: float) -> None:
        """With a stretched halo (z_uniform_half_kpc of ``values`` set; GridConfig fields, None = not set), its
        uniform part and its largest step must reach the z step ``dz_kpc`` (kpc; given, the galdef's or a store's),
        as crprop.galaxy.GalaxySetup requires; ValueError naming the field (GridConfig, and crnet simulate on its
        galdef's grid: one rule for both). Without one, z_stretch_factor and dz_max_kpc are unused here (a store
        records GalaxySetup's 1.0 kpc dz_max next to a 1.3 kpc dz; :meth:`check_stretch_options`).

        dz_max_kpc not set means GalaxySetup's 1.0 kpc, also when dz is larger: a default that followed dz
        (dz_max = dz) would make the 'stretched' halo uniform, silently, and any other multiple of dz would be a grid
        nobody chose; so that case is refused with the default named and the value to give (walk-through by
        helper-87, session 21)."""
        from crprop.grid import check_stretched_halo

        z_uniform = values.get("z_uniform_half_kpc")
        if z_uniform is None:
            return
        dz_max = values.get("dz_max_kpc")
        try:
            check_stretched_halo(z_uniform, paper_grid_defaults()["dz_max_kpc"] if dz_max is None else dz_max, dz_kpc)
        except ValueError as exc:
            if dz_max is None and str(exc).startswith("dz_max_kpc"):
                raise ValueError(f"{exc} (the default, below the z step: set dz_max_kpc >= {dz_kpc:g} kpc, the "
                                 "stretched halo's largest z step)") from None
            raise

    def _check_halo_interior(self) -> None:
        """The z lattice must leave an interior z node for every halo the scans, fits and re-simulations on this
        grid can reach: the whole Table 1 box (MCMC chains walk it, the designs cover it; a start only centres
        them), down to PRIOR_BOX's smallest z_halo_kpc. Before, a 100 kpc dz failed inside the scan, after the
        pipeline had written an empty store and a stage marker (walk-through by helper-87, session 21)."""
        from crprop.params import PRIOR_BOX

        z_low = PRIOR_BOX["z_halo_kpc"][0]
        changes = {name: getattr(self, name) for name in ("dz_kpc",) + self.STRETCH_FIELDS
                   if getattr(self, name) is not None}
        paper = self._paper_setup()
        setup = paper.with_changes(**changes) if changes else paper
        self.check_halo(setup, z_low, f"z_halo_kpc = {z_low:g} kpc, the smallest halo of the prior box "
                        "(crprop.params.PRIOR_BOX), which a scan can reach")

    @staticmethod
    @functools.lru_cache(maxsize=1)
    def _paper_setup():
        """crprop.galaxy.GalaxySetup.paper(), read once: the halo check builds a z lattice for every GridConfig
        (reading the galdef and building the network costs ~25 ms; with_changes makes fresh copies)."""
        from crprop.galaxy import GalaxySetup

        return GalaxySetup.paper()

    @staticmethod
    def check_halo(setup, z_halo_kpc: float, halo: str) -> None:
        """ValueError, led by dz_kpc, unless the z lattice of ``setup`` (a crprop GalaxySetup) leaves an interior z
        node for a halo of ``z_halo_kpc`` (kpc; ``halo`` describes it in the message), as
        crprop.discretization.vertical_coefficients needs; the message gives the largest dz always allowed."""
        from crprop.discretization import smallest_halo_kpc

        z = setup.grid(z_halo_kpc).z_kpc
        if z_halo_kpc > smallest_halo_kpc(z):
            return
        raise ValueError(f"dz_kpc = {setup.dz_kpc:g} kpc leaves no interior z node for {halo}: the z node nearest "
                         f"the disc lies at |z| = {float(np.abs(z).min()):g} kpc and the halo boundary must lie more "
                         f"than half a z step beyond a node; use dz_kpc <= {z_halo_kpc:g} kpc (the largest value that "
                         f"works on any lattice; up to {2 * z_halo_kpc:g} kpc only where a node sits at z = 0, i.e. "
                         f"where the galdef's halo, {setup.z_halo_kpc:g} kpc, is within a quarter step of a whole "
                         "number of steps)")

    def settings(self) -> dict[str, Any]:
        """The options that are set (None = the default, left out): what cache keys and resume checks compare,
        so that adding an option does not orphan results computed before it existed."""
        return {k: v for k, v in asdict(self).items() if v is not None}

    def setup(self):
        from crprop.galaxy import GalaxySetup

        changes = {k: v for k, v in self.settings().items() if k != "half_lives"}
        setup = GalaxySetup.paper().with_changes(**changes) if changes else GalaxySetup.paper()
        return apply_half_lives(setup, self.half_lives)


def apply_half_lives(setup, half_lives: str | None):
    """``setup`` (a crprop GalaxySetup) with the half-lives :data:`HALF_LIVES` names: None / 'galprop' keep
    GALPROP's tables, 'measured' takes crprop.nuclear.decay.MEASURED_HALF_LIVES_YR (10Be 1.387 Myr)."""
    from crprop.nuclear.decay import MEASURED_HALF_LIVES_YR

    _check_half_lives(half_lives)
    return setup.with_half_lives(MEASURED_HALF_LIVES_YR) if half_lives == "measured" else setup


@functools.lru_cache(maxsize=1)
def paper_grid_defaults() -> dict[str, Any]:
    """The values GridConfig's None stands for, as crprop.galaxy.GalaxySetup.paper() has them: 'dr_kpc', 'dz_kpc'
    (kpc), 'ekin_factor' from the CR-ML galdef; 'loss_scheme' and the stretched-halo options from GalaxySetup's
    defaults (z_uniform_half_kpc None = GALPROP's uniform z grid; z_stretch_factor 1.15, dz_max_kpc 1.0 kpc)."""
    from crprop.galaxy import GalaxySetup

    paper = GalaxySetup.paper()
    return {name: getattr(paper, name) for name in ("dr_kpc", "dz_kpc", "ekin_factor", "z_uniform_half_kpc",
                                                     "z_stretch_factor", "dz_max_kpc", "loss_scheme")}


def normalised_grid(recorded: Any) -> Any:
    """A grid recorded by an earlier run (``asdict`` of a GridConfig, or its :meth:`GridConfig.settings`) as this
    code records the same grid: explicit paper values and 'galprop' half-lives as None (since session 19), the keys
    it had kept. What is no GridConfig record (another dict, or not a dict) comes back unchanged. Resume checks
    apply it to the recorded side, so that stores, stage markers and feedback logs written before still match."""
    if not isinstance(recorded, dict):
        return recorded
    try:
        with warnings.catch_warnings():  # a record's idle stretch option was warned about when it was made
            warnings.simplefilter("ignore", IdleStretchWarning)
            normal = asdict(GridConfig(**recorded))
    except (TypeError, ValueError):
        return recorded
    return {key: normal[key] for key in recorded}


HALF_LIVES: tuple[str | None, ...] = (None, "galprop", "measured")
"""Allowed GridConfig.half_lives: GALPROP's table (None, 'galprop') or the laboratory values ('measured')."""


def _check_half_lives(half_lives: str | None) -> None:
    if half_lives not in HALF_LIVES:
        raise ValueError(f"half_lives must be one of {HALF_LIVES[1:]} (default 'galprop'), got {half_lives!r}")


NON_CONVERGING_MODES: tuple[str, ...] = ("galprop",)
"""Solver modes whose answer is defined by a fixed procedure, not by the steady state: GALPROP's dt ladder stops
short of it (crml_base on the CI grid, dr 4 / dz 1.3 kpc, energy factor 3: relative residual 19 against the
tolerance 1e-6), so every model it returns is flagged non-converged."""


def require_converging_mode(mode: str, use: str) -> None:
    """Refuse a mode of :data:`NON_CONVERGING_MODES` for ``use`` (a scan that rejects non-converged models, or
    re-simulations that count them as failed): every model would be lost. Such modes are for reproducing
    GALPROP's own numbers (crnet simulate, crnet galprop compare, the benchmarks)."""
    if mode in NON_CONVERGING_MODES:
        raise ValueError(f"mode {mode!r} cannot be used for {use}: its fixed time-step ladder never meets the "
                         "convergence tolerance, so every model would count as non-converged. Use mode 'fast' "
                         "(converged steady state) or 'exact'")


WARM_START_MODES: tuple[str, ...] = ("fast",)
"""Solver modes that take a warm start: 'fast' iterates to a tolerance from psi0. 'galprop' marches
GALPROP's fixed time ladder from psi = 0 (its answer is defined by that start) and 'exact' is direct."""


class PropagateModel:
    """crprop.propagate on the paper setup + crnet.likelihood.chi2, batched.

    Warm start (mode 'fast'): the psi of every chain's current state is kept on the grid of the largest
    halo (z_h = 20 kpc) and handed to the solver as psi0 for that chain's next proposal; models with a
    smaller halo use the central z rows (the z lattice of a smaller grid is a centred subset).
    The cache is float32 (a starting guess needs no more; the solver iterates to its tolerance) and
    lives where propagate returns psi (host memory, or GPU memory with the cupy backend). Memory:
    4 bytes x n_species x n_r x n_z(z_h = 20 kpc) x n_E per chain; warm starts are switched off (with a
    warning) beyond ``warm_start_max_bytes``. max_steps caps the solver iterations per species (a batch
    stops each model at its own converged step; see crprop.solvers.douglas).
    """

    def __init__(self, grid: GridConfig | None = None, mode: str = "fast", backend: str = "auto",
                 tol: float | None = None, dataset: str = "paper", warm_start: bool = True,
                 n_slots: int = 0, warm_start_max_bytes: float = 8e9, max_steps: int | None = None) -> None:
        from crprop.backends import get_backend
        from crprop.params import PRIOR_BOX
        from crprop.solvers import DEFAULT_MAX_STEPS, DEFAULT_TOL, check_solver_settings
        from crprop.spectra import Spectra

        check_solver_settings(mode, tol, max_steps, backend)  # tol: refused only in the first solve before
        self.grid_config = grid or GridConfig()
        self.setup = self.grid_config.setup()
        self.mode, self.dataset = mode, dataset
        self.backend = backend
        self.backend_name = "scipy" if mode == "exact" else get_backend(backend).name.split(".")[-1]
        self.tol = DEFAULT_TOL if tol is None else float(tol)
        self.max_steps = DEFAULT_MAX_STEPS if max_steps is None else int(max_steps)
        self.full_grid = self.setup.grid(PRIOR_BOX["z_halo_kpc"][1])
        net = self.setup.network
        keep = [s for s in net.species if s.k_electron == 0]
        e = self.full_grid.ekin_mev_per_n / 1e3
        probe = Spectra(e, [s.z for s in keep], [s.a for s in keep], np.ones((1, len(keep), e.size)), [True], [0.0])
        self.species = probe.species_table()[0]
        self.ekin_gev_per_n = e
        per_slot = 4.0 * len(net.species) * int(np.prod(self.full_grid.shape))
        self.warm_start = bool(warm_start and mode in WARM_START_MODES and n_slots > 0)
        if self.warm_start and per_slot * n_slots > warm_start_max_bytes:
            warnings.warn(f"warm starts need {per_slot * n_slots / 1e9:.1f} GB for {n_slots} chains "
                          f"(> {warm_start_max_bytes / 1e9:.1f} GB): switched off", stacklevel=2)
            self.warm_start = False
        self._cache: dict[int, np.ndarray] = {}
        self._has_state = np.zeros(max(n_slots, 0), dtype=bool)
        self._pending: tuple[np.ndarray, dict[int, np.ndarray], int] | None = None
        self.n_slots = n_slots
        self.solver_seconds = 0.0

    def store_fields(self) -> dict[str, Any]:
        s, g = self.setup, self.full_grid
        grid = {"galdef": "galdef_54_crml", "r_max_kpc": s.r_max_kpc, "dr_kpc": s.dr_kpc, "dz_kpc": s.dz_kpc,
                "z_min_kpc_galdef": s.z_min_kpc, "ekin_min_mev_per_n": s.ekin_min_mev_per_n,
                "ekin_max_mev_per_n": s.ekin_max_mev_per_n, "ekin_factor": s.ekin_factor,
                "shape_at_zh_max": list(g.shape), "network_iterations": s.network_iterations,
                "injection_form": s.injection_form, "tol": self.tol, "max_steps": self.max_steps,
                "z_uniform_half_kpc": s.z_uniform_half_kpc,
                "z_stretch_factor": s.z_stretch_factor, "dz_max_kpc": s.dz_max_kpc, "loss_scheme": s.loss_scheme}
        if self.grid_config.half_lives == "measured":  # key absent for GALPROP's: older stores stay mergeable
            grid["half_lives"] = "measured"
        return {"grid": grid, "cross_sections": f"inelastic={s.inelastic_model}; production={s.production_model}",
                "solver_mode": self.mode, "backend": self.backend_name, "dataset": self.dataset}

    def _z_offset(self, grid) -> int:
        nz_full, nz = self.full_grid.shape[1], grid.shape[1]
        off = (nz_full - nz) // 2
        if not np.allclose(self.full_grid.z_kpc[off:off + nz], grid.z_kpc, atol=1e-9):
            raise RuntimeError("warm start: the batch grid's z nodes are not a centred subset of the full grid")
        return off

    def evaluate(self, params: np.ndarray, slots: np.ndarray | None = None,
                 residuals: bool = False) -> Evaluation:
        """Propagate (B, 10) PARAM_NAMES rows (breaks in MV) and score them; ``residuals`` also returns the
        normalised data residuals (crnet.scan.fit)."""
        from crnet.likelihood import RATIO_PARAMETERS, chi2
        from crprop.params import PropagationParams
        from crprop.propagate import batch_grid, propagate
        from crprop.solvers import NonConvergenceWarning

        plist = PropagationParams.from_array(params, check_prior=True)
        grid = batch_grid(self.setup, float(np.max(np.asarray(params)[:, 4])))
        psi0 = None
        use_warm = self.warm_start and slots is not None
        if use_warm and self._cache and self._has_state[slots].any():
            off = self._z_offset(grid)
            nz = grid.shape[1]
            psi0 = {s: _slots_of(arr[:, off:off + nz], slots) for s, arr in self._cache.items()}
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NonConvergenceWarning)
            out = propagate(self.setup, plist, mode=self.mode, backend=self.backend, tol=self.tol,
                            max_steps=self.max_steps, check_prior=True, return_psi=use_warm, psi0=psi0)
        self.solver_seconds += time.perf_counter() - t0
        spectra, psi = out if use_warm else (out, None)
        if use_warm:
            self._pending = (np.asarray(slots), psi, self._z_offset(grid))
        names, table = spectra.species_table(self.species)
        res = chi2(spectra, self.dataset, residuals=residuals)
        norms = np.column_stack([res.q_c] + [res.ratios[k] for k in RATIO_PARAMETERS.values()])
        steps = int(sum(spectra.meta.get("steps_per_species", {}).values()))
        return Evaluation(table.astype(np.float32), res.chi2_tot, norms, spectra.converged, spectra.residual, steps,
                          res.residuals)

    def commit(self, slots: np.ndarray, accepted: np.ndarray) -> None:
        if not self.warm_start or self._pending is None:
            return
        p_slots, psi, off = self._pending
        self._pending = None
        if not np.array_equal(p_slots, np.asarray(slots)):
            raise RuntimeError("commit: slots differ from those of the last evaluate()")
        take = np.nonzero(np.asarray(accepted, dtype=bool))[0]
        if take.size == 0:
            return
        full = self.full_grid.shape
        for s, arr in psi.items():
            xp = array_module(arr)  # the cache lives where propagate keeps psi (CuPy on the GPU)
            if s not in self._cache:
                self._cache[s] = xp.zeros(full + (self.n_slots,), dtype=np.float32)
            dst = self._cache[s]
            nz = arr.shape[1]
            dst_idx = xp.asarray(p_slots[take])
            dst[..., dst_idx] = 0.0
            dst[:, off:off + nz, :, dst_idx] = arr[..., xp.asarray(take)].astype(np.float32)
        self._has_state[p_slots[take]] = True


def _slots_of(arr, slots: np.ndarray):
    """Contiguous arr[..., slots] in arr's own array module."""
    xp = array_module(arr)
    return xp.ascontiguousarray(arr[..., xp.asarray(slots)])
