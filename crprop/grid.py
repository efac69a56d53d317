"""The (r, z, E_kin/n) grid shared by every species and every model of a batch.

Conventions (GALPROP v54):
* r nodes ``r_min .. r_max`` step ``dr`` (kpc); psi = 0 on the last node (r = R_h), axis row at r = 0.
* z nodes ``z_min .. z_max`` step ``dz`` (kpc); psi = 0 on the first and last node (|z| = z_h).
  crnet's optional stretched halo (crprop.galaxy.GalaxySetup.z_uniform_half_kpc) keeps the uniform step near
  the disc and widens it geometrically in the outer halo; such a grid is symmetric about z = 0 and its
  neighbouring z steps differ by at most Z_MAX_STEP_RATIO.
* kinetic energy per nucleon ``Ekin[i] = Ekin_min * Ekin_factor**i`` (MeV/n),
  ``n_E = int(ln(Ekin_max/Ekin_min)/ln(Ekin_factor) + 1.9)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from crprop.constants import KPC_CM

Z_MAX_STEP_RATIO = 2.0
"""Largest ratio of neighbouring z steps a non-uniform grid may have: the three-point stencil on a non-uniform
grid is first-order where the steps jump, so steps must change gradually (the stretched halo uses 1.1-1.3)."""


def check_positive(name: str, value: float) -> None:
    """ValueError naming ``name`` unless ``value`` is a finite number > 0."""
    if not isinstance(value, int | float | np.number) or not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value!r}")


def check_energy_factor(ekin_factor: float) -> None:
    """ValueError unless the energy grid factor (ratio of neighbouring kinetic energies) is a finite number > 1."""
    if not (np.isfinite(ekin_factor) and ekin_factor > 1.0):
        raise ValueError(f"ekin_factor must be a finite number > 1 (ratio of neighbouring kinetic energies), got "
                         f"{ekin_factor!r}")


def check_stretched_halo(z_uniform_half_kpc: float, dz_max_kpc: float, dz_kpc: float) -> None:
    """ValueError unless a stretched halo's uniform part (|z| up to z_uniform_half_kpc) and its largest step reach
    the disc's step dz_kpc (all kpc): the lattice starts at dz and only widens."""
    if not (np.isfinite(z_uniform_half_kpc) and z_uniform_half_kpc >= dz_kpc):
        raise ValueError(f"z_uniform_half_kpc must be >= dz_kpc ({dz_kpc:g} kpc), got {z_uniform_half_kpc!r}")
    if not (np.isfinite(dz_max_kpc) and dz_max_kpc >= dz_kpc):
        raise ValueError(f"dz_max_kpc must be >= dz_kpc ({dz_kpc:g} kpc), got {dz_max_kpc!r}")


def check_stretch_factor(z_stretch_factor: float) -> None:
    """ValueError unless a stretched halo's ratio of neighbouring z steps lies in (1, :data:`Z_MAX_STEP_RATIO`]."""
    if not (np.isfinite(z_stretch_factor) and 1.0 < z_stretch_factor <= Z_MAX_STEP_RATIO):
        raise ValueError(f"z_stretch_factor must lie in (1, {Z_MAX_STEP_RATIO:g}] (ratio of neighbouring z steps), "
                         f"got {z_stretch_factor!r}")


@dataclass(frozen=True)
class Grid:
    """Spatial and energy grid.

    Attributes
    ----------
    r_kpc : (n_r,) radial nodes, kpc, strictly increasing, r_kpc[0] == 0 (axis).
    z_kpc : (n_z,) vertical nodes, kpc, strictly increasing; uniform (step dz_kpc, GALPROP) or symmetric about
        z = 0 with steps that grow away from the plane by at most Z_MAX_STEP_RATIO per node (stretched halo).
    ekin_mev_per_n : (n_E,) kinetic energy per nucleon, MeV/n, strictly increasing, log-uniform.
    """

    r_kpc: np.ndarray
    z_kpc: np.ndarray
    ekin_mev_per_n: np.ndarray
    _hash: int = field(default=0, compare=False, repr=False)

    def __post_init__(self) -> None:
        for name in ("r_kpc", "z_kpc", "ekin_mev_per_n"):
            arr = np.asarray(getattr(self, name), dtype=np.float64)
            if arr.ndim != 1 or arr.size < 3:
                raise ValueError(f"Grid.{name} must be 1-D with at least 3 nodes, got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"Grid.{name} contains NaN or inf")
            if not np.all(np.diff(arr) > 0):
                raise ValueError(f"Grid.{name} must be strictly increasing (monotonic grid required)")
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)
        if abs(self.r_kpc[0]) > 1e-12:
            raise ValueError(f"Grid.r_kpc must start on the axis r = 0, got r_kpc[0] = {self.r_kpc[0]}")
        if not np.allclose(np.diff(self.r_kpc), self.dr_kpc, rtol=1e-9, atol=1e-12):
            raise ValueError("Grid.r_kpc must be uniformly spaced")
        if not self.z_uniform:
            steps = np.diff(self.z_kpc)
            if not np.allclose(self.z_kpc, -self.z_kpc[::-1], rtol=0.0, atol=1e-9):
                raise ValueError("Grid.z_kpc: a non-uniform z grid must be symmetric about z = 0")
            ratio = np.maximum(steps[1:] / steps[:-1], steps[:-1] / steps[1:])
            if ratio.max() > Z_MAX_STEP_RATIO * (1.0 + 1e-9):
                raise ValueError(f"Grid.z_kpc: neighbouring z steps differ by a factor {ratio.max():.3g} "
                                 f"(allowed <= {Z_MAX_STEP_RATIO}); use a gentler stretch")
        if self.ekin_mev_per_n[0] <= 0:
            raise ValueError("Grid.ekin_mev_per_n must be positive (MeV/n)")
        object.__setattr__(
            self, "_hash", hash((self.r_kpc.tobytes(), self.z_kpc.tobytes(), self.ekin_mev_per_n.tobytes()))
        )

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return (
            self.shape == other.shape
            and np.array_equal(self.r_kpc, other.r_kpc)
            and np.array_equal(self.z_kpc, other.z_kpc)
            and np.array_equal(self.ekin_mev_per_n, other.ekin_mev_per_n)
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def regular(
        cls,
        r_max_kpc: float = 20.0,
        dr_kpc: float = 1.0,
        z_half_kpc: float = 3.9,
        dz_kpc: float = 0.2,
        ekin_min_mev_per_n: float = 1.0,
        ekin_max_mev_per_n: float = 1.0e8,
        ekin_factor: float = 1.25,
    ) -> Grid:
        """GALPROP-style grid: r in [0, r_max], z in [-z_half, +z_half], log-uniform Ekin/n.

        Node counts follow GALPROP: n_r = int(r_max/dr + 1.5), n_z = int(2 z_half/dz + 1.5),
        n_E = int(ln(Ekin_max/Ekin_min)/ln(Ekin_factor) + 1.9). Defaults are the paper's grid
        (21 x 40 x 84). Units: kpc, MeV/n.
        """
        for name, value in (
            ("r_max_kpc", r_max_kpc),
            ("dr_kpc", dr_kpc),
            ("z_half_kpc", z_half_kpc),
            ("dz_kpc", dz_kpc),
            ("ekin_min_mev_per_n", ekin_min_mev_per_n),
            ("ekin_max_mev_per_n", ekin_max_mev_per_n),
        ):
            check_positive(name, value)
        check_energy_factor(ekin_factor)
        if ekin_max_mev_per_n <= ekin_min_mev_per_n:
            raise ValueError("ekin_max_mev_per_n must exceed ekin_min_mev_per_n")
        n_r = int(r_max_kpc / dr_kpc + 1.5)
        n_z = int(2.0 * z_half_kpc / dz_kpc + 1.5)
        n_e = int(math.log(ekin_max_mev_per_n / ekin_min_mev_per_n) / math.log(ekin_factor) + 1.9)
        r = np.arange(n_r) * dr_kpc
        z = -z_half_kpc + np.arange(n_z) * dz_kpc
        e = ekin_min_mev_per_n * ekin_factor ** np.arange(n_e)
        return cls(r, z, e)

    # ------------------------------------------------------------------ derived quantities
    @property
    def shape(self) -> tuple[int, int, int]:
        """(n_r, n_z, n_E)."""
        return (self.r_kpc.size, self.z_kpc.size, self.ekin_mev_per_n.size)

    @property
    def dr_kpc(self) -> float:
        return float(self.r_kpc[1] - self.r_kpc[0])

    @property
    def z_uniform(self) -> bool:
        """True when the z nodes are equally spaced (GALPROP's grids)."""
        steps = np.diff(self.z_kpc)
        return bool(np.allclose(steps, steps[0], rtol=1e-9, atol=1e-12))

    @property
    def dz_kpc(self) -> float:
        """z step, kpc: the step of a uniform grid; on a stretched grid the smallest (central) step."""
        steps = np.diff(self.z_kpc)
        return float(steps[0]) if self.z_uniform else float(steps.min())

    @property
    def z_steps_kpc(self) -> np.ndarray:
        """(n_z - 1,) distances between neighbouring z nodes, kpc."""
        return np.diff(self.z_kpc)

    @property
    def z_cell_bounds_kpc(self) -> tuple[np.ndarray, np.ndarray]:
        """(lower, upper) edges of each node's z cell, kpc: half-way to the neighbouring nodes; the end cells
        are symmetric about their node (their width is the adjacent step). A uniform grid gives z -+ dz/2."""
        z = self.z_kpc
        steps = np.diff(z)
        lo = np.concatenate([[z[0] - 0.5 * steps[0]], z[1:] - 0.5 * steps])
        hi = np.concatenate([z[:-1] + 0.5 * steps, [z[-1] + 0.5 * steps[-1]]])
        return lo, hi

    @property
    def dr_cm(self) -> float:
        return self.dr_kpc * KPC_CM

    @property
    def dz_cm(self) -> float:
        return self.dz_kpc * KPC_CM

    @property
    def z_half_kpc(self) -> float:
        """Halo half-height z_h (kpc): the largest |z| node (a psi = 0 boundary)."""
        return float(max(-self.z_kpc[0], self.z_kpc[-1]))

    @property
    def r_max_kpc(self) -> float:
        return float(self.r_kpc[-1])

    @property
    def ekin_factor(self) -> float:
        return float(self.ekin_mev_per_n[1] / self.ekin_mev_per_n[0])

    def sun_weights(self, r_sun_kpc: float, z_sun_kpc: float = 0.0) -> list[tuple[int, int, float]]:
        """Interpolation stencil for the solar position: list of (i_r, i_z, weight).

        Linear in r between the bracketing nodes; in z the bracketing nodes are averaged linearly
        (for a grid with nodes at +-dz/2 and z_sun = 0 this is the mean of the two, as the GALPROP
        reference files define the Sun).
        """
        def bracket(nodes: np.ndarray, x: float, name: str) -> list[tuple[int, float]]:
            if not (nodes[0] <= x <= nodes[-1]):
                raise ValueError(f"{name} = {x} outside grid [{nodes[0]}, {nodes[-1]}]")
            i = int(np.searchsorted(nodes, x, side="right") - 1)
            i = min(max(i, 0), nodes.size - 2)
            t = (x - nodes[i]) / (nodes[i + 1] - nodes[i])
            return [(i, 1.0 - t), (i + 1, t)]

        out = []
        for ir, wr in bracket(self.r_kpc, r_sun_kpc, "r_sun_kpc"):
            for iz, wz in bracket(self.z_kpc, z_sun_kpc, "z_sun_kpc"):
                if wr * wz != 0.0:
                    out.append((ir, iz, wr * wz))
        return out
