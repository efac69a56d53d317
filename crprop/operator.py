"""The discrete transport operator of one species for a batch of B models.

Memory layout (documented decision): every field is C-ordered ``[r, z, E, model]`` — the model
index is fastest. A GPU thread per (line, model) then reads coalesced memory in all three sweep
directions, and on the CPU the innermost loop runs over independent models, which SIMD-vectorises.

Discrete steady-state problem ``A psi = Q`` written, per direction, in GALPROP's "alpha" form:
row i of direction d contributes ``-a1_i psi_{i-1} + a2_i psi_i - a3_i psi_{i+1}`` (s^-1).

* r: ``r_a1, r_a2, r_a3`` shape (n_r, n_E, B) — spatially uniform diffusion (GALPROP's axis row).
* z: ``z_a1, z_a2, z_a3`` shape (n_z, n_E, B) — room for z-dependent convection.
* p: ``p_a1, p_a2, p_a3`` shape (n_E, B) — reacceleration (model-dependent, uniform in space)
  plus ``loss_a2, loss_a3`` (n_r, n_z, n_E) — momentum losses upwinded to lower momentum —
  plus ``res_loss_a2, res_loss_a3, res_loss_a4`` (n_r, n_z, n_E), the loss rows of the residual: the same as
  loss_a2, loss_a3 (and 0) for GALPROP's first-order stencil; for crnet's second-order one
  (crprop.discretization.LOSS_SCHEMES) its row ``res_loss_a2 psi_k - res_loss_a3 psi_k+1 + res_loss_a4 psi_k+2``,
  while the line solves keep the first-order loss_a2, loss_a3 (defect correction: A is the residual's operator) —
  plus ``gamma`` (n_r, n_z, n_E), the catastrophic rate (fragmentation + decay, s^-1), added to
  a2 of the p direction only (GALPROP v54 r2504, see galprop-internals README §6).
  Losses and gamma depend on the gas maps and the species only, so they are shared by the batch.
* Dirichlet nodes (psi = 0): ``r_interior`` (n_r,) and ``z_interior`` (n_z, B) are False there.
  Their rows are the identity in every solve, so couplings into them multiply zero.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

_FIELDS_R = ("r_a1", "r_a2", "r_a3")
_FIELDS_Z = ("z_a1", "z_a2", "z_a3")
_FIELDS_P = ("p_a1", "p_a2", "p_a3")
_FIELDS_SHARED = ("loss_a2", "loss_a3", "gamma", "res_loss_a2", "res_loss_a3", "res_loss_a4")


@dataclass
class TransportOperator:
    """Tridiagonal coefficients (s^-1) of A = A_r + A_z + A_p for a batch of models. See module doc."""

    r_a1: np.ndarray
    r_a2: np.ndarray
    r_a3: np.ndarray
    z_a1: np.ndarray
    z_a2: np.ndarray
    z_a3: np.ndarray
    p_a1: np.ndarray
    p_a2: np.ndarray
    p_a3: np.ndarray
    loss_a2: np.ndarray
    loss_a3: np.ndarray
    gamma: np.ndarray
    r_interior: np.ndarray
    z_interior: np.ndarray
    res_loss_a2: np.ndarray | None = None
    res_loss_a3: np.ndarray | None = None
    res_loss_a4: np.ndarray | None = None
    high_order_losses: bool = field(init=False, default=False)
    """True when the residual's loss stencil differs from the solves' (second order, psi_k+2 coupling); set once
    here, as the arrays are not changed after construction."""

    def __post_init__(self) -> None:
        given = [x is not None for x in (self.res_loss_a2, self.res_loss_a3, self.res_loss_a4)]
        if any(given) and not all(given):
            raise ValueError("TransportOperator: res_loss_a2, res_loss_a3 and res_loss_a4 go together (all or none)")
        if not any(given):  # first-order stencil: the residual's loss rows are the solves' ones
            self.res_loss_a2, self.res_loss_a3 = self.loss_a2, self.loss_a3
            self.res_loss_a4 = np.zeros_like(np.asarray(self.loss_a2, dtype=np.float64))
        for name in _FIELDS_R + _FIELDS_Z + _FIELDS_P + _FIELDS_SHARED:
            setattr(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float64))
        self.r_interior = np.ascontiguousarray(self.r_interior, dtype=bool)
        self.z_interior = np.ascontiguousarray(self.z_interior, dtype=bool)
        self.validate()
        self.high_order_losses = bool(np.any(self.res_loss_a4))

    # ------------------------------------------------------------------ shape
    @property
    def shape(self) -> tuple[int, int, int, int]:
        """(n_r, n_z, n_E, B)."""
        n_r, n_e, b = self.r_a1.shape
        return (n_r, self.z_a1.shape[0], n_e, b)

    @property
    def n_models(self) -> int:
        return self.r_a1.shape[2]

    def validate(self) -> None:
        """Raise ValueError naming the field for wrong shapes, NaN/inf or negative coefficients."""
        if self.r_a1.ndim != 3:
            raise ValueError(f"TransportOperator.r_a1 must have shape (n_r, n_E, B), got {self.r_a1.shape}")
        n_r, n_e, b = self.r_a1.shape
        if b == 0:
            raise ValueError("TransportOperator: empty batch (B = 0 models)")
        n_z = self.z_a1.shape[0] if self.z_a1.ndim == 3 else -1
        want = {
            **{f: (n_r, n_e, b) for f in _FIELDS_R},
            **{f: (n_z, n_e, b) for f in _FIELDS_Z},
            **{f: (n_e, b) for f in _FIELDS_P},
            **{f: (n_r, n_z, n_e) for f in _FIELDS_SHARED},
            "r_interior": (n_r,),
            "z_interior": (n_z, b),
        }
        for name, shape in want.items():
            arr = getattr(self, name)
            if arr.shape != shape:
                raise ValueError(f"TransportOperator.{name} has shape {arr.shape}, expected {shape} "
                                 "(n_r, n_z, n_E, B must agree across fields)")
            if arr.dtype != bool and not np.all(np.isfinite(arr)):
                raise ValueError(f"TransportOperator.{name} contains NaN or inf")
        # Spatial diffusion, losses and catastrophic rates are non-negative by construction; the
        # reacceleration stencil's off-diagonals may change sign where D_pp varies steeply (as in GALPROP).
        for name in _FIELDS_R + _FIELDS_Z + _FIELDS_SHARED:
            if np.any(getattr(self, name) < 0):
                raise ValueError(f"TransportOperator.{name} must be >= 0 (rates in s^-1)")

    def check_source(self, q: np.ndarray, name: str = "source", finite: bool = True) -> np.ndarray:
        """A source/field array as C-contiguous float64 (no copy when it is one) of this operator's shape
        (n_r, n_z, n_E, B), and finite unless ``finite`` is False (the backends' per-sweep entry points skip that
        full-field pass; the solvers check once)."""
        q = np.ascontiguousarray(q, dtype=np.float64)
        if q.shape != self.shape:
            raise ValueError(f"{name} has shape {q.shape}, expected {self.shape} (n_r, n_z, n_E, B)")
        if finite and not np.all(np.isfinite(q)):
            raise ValueError(f"{name} contains NaN or inf")
        return q

    def interior_mask(self) -> np.ndarray:
        """(n_r, n_z, 1, B) bool: True where psi is an unknown (not a Dirichlet node)."""
        return self.r_interior[:, None, None, None] & self.z_interior[None, :, None, :]

    def require_first_order_losses(self, what: str) -> None:
        """Raise ValueError for a second-order loss stencil where ``what`` (GALPROP's Crank-Nicolson sweeps)
        can only take the tridiagonal first-order one."""
        if self.high_order_losses:
            raise ValueError(f"{what} marches GALPROP's tridiagonal Crank-Nicolson sweeps and cannot take the "
                             "second-order loss stencil (loss_scheme 'upwind2'); use mode 'fast' or 'exact'")

    def p_coefficients(self, residual: bool = False) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """p-direction tridiagonal coefficients (a1, a2, a3), each (n_r, n_z, n_E, B): the line solves' rows,
        or with ``residual`` the residual's rows without their psi_k+2 weight (res_loss_a4). For reference code."""
        l2, l3 = (self.res_loss_a2, self.res_loss_a3) if residual else (self.loss_a2, self.loss_a3)
        a1 = np.broadcast_to(self.p_a1[None, None], self.shape)
        a2 = self.p_a2[None, None] + (l2 + self.gamma)[..., None]
        a3 = self.p_a3[None, None] + l3[..., None]
        return a1, a2, a3

    def raw_z_keep(self) -> tuple[np.ndarray, np.ndarray]:
        """(keep1, keep3), each (n_z, B) float64 1.0 / 0.0: which z couplings GALPROP's raw sweeps keep.

        GALPROP's z grid ends at the model's halo boundary, so its boundary row couples inward only. Here a model's
        halo may end inside the batch's z grid (a taller-halo model shares the batch), and its Dirichlet rows beyond
        the boundary node would be solved too and couple to it (the galprop-mode result then depended on the batch:
        2.4e-3 of psi on tests/test_galprop_mode_s22.py's problem, review by helper-95, session 22). The rule: a
        Dirichlet row couples only to unknowns (a1 of row j kept iff row j-1 is an unknown, a3 iff row j+1 is);
        unknowns keep both. On a grid whose Dirichlet rows are its two edge rows this drops only couplings that point
        out of the grid (never read)."""
        zi = self.z_interior
        below = np.zeros_like(zi)
        below[1:] = zi[:-1]
        above = np.zeros_like(zi)
        above[:-1] = zi[1:]
        return (zi | below).astype(np.float64), (zi | above).astype(np.float64)

    def raw_z_coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """z rows (a1, a2, a3), each (n_z, n_E, B), of GALPROP's raw Crank-Nicolson sweeps (``raw=True`` in the
        backends): the operator's, with the couplings of :meth:`raw_z_keep` cut (multiplied by 0; the others by 1,
        bitwise unchanged). Unknowns' rows are the operator's, so a residual evaluated with these equals A's."""
        keep1, keep3 = self.raw_z_keep()
        return self.z_a1 * keep1[:, None, :], self.z_a2, self.z_a3 * keep3[:, None, :]

    def select(self, models: np.ndarray | list[int]) -> TransportOperator:
        """Operator restricted to a subset of models."""
        idx = np.asarray(models)
        kw = {f: getattr(self, f)[..., idx] for f in _FIELDS_R + _FIELDS_Z + _FIELDS_P}
        kw.update({f: getattr(self, f) for f in _FIELDS_SHARED})
        return TransportOperator(**kw, r_interior=self.r_interior, z_interior=self.z_interior[:, idx])
