"""`fast` mode: Douglas ADI (theta = 1) as a stationary iteration with cycled pseudo-time steps.

In delta form one step is d = tau (Q - A psi); (I + tau A_z)(I + tau A_p)(I + tau A_r) d' = d;
psi += d'. Any fixed point satisfies A psi = Q exactly, whatever tau, so tau can be cycled
geometrically between ~1/lambda_min (relaxes the slow halo-diffusion modes) and ~1/lambda_max
(damps the stiff grid-scale modes). tau is chosen per energy and per model from the operator
itself (local pseudo-time stepping), which evens out the 4+ decades that D spans across the grid.
Each model stops at the first step whose relative residual (see solvers.result) is below ``tol``, and the
batch stops when every model has (see :func:`iterate`).
"""

from __future__ import annotations

import numpy as np

from crprop.operator import TransportOperator
from crprop.solvers.result import initial_field, relative_residual, residual_scale, slice_norms

DEFAULT_CYCLE = 8
"""Pseudo-time steps per geometric cycle. Measured on crml_base 12C (paper grid, tol 1e-6): 6, 8, 10
steps per cycle need 64, 61, 67 iterations with TAU_MAX_STRETCH = 3. Re-measured for the scan's case (warm-started
posterior-like batch, full network, tol 1e-4, per-model stop): 8 and 3 still give the fewest steps per model (46.2;
6 cycles 46.7, 10 63.1, stretch 1 / 10 50.2 / 51.1; benchmarks/results/cycle_sweep_16.md)."""

TAU_MAX_STRETCH = 3.0
"""The largest pseudo-time step is this factor above 1/lambda_lo. Measured on crml_base 12C: 1, 3, 10,
30 give 76, 61, 70, 79 iterations to tol 1e-6 (lambda_lo over-estimates the slowest mode, which is
set by the momentum coupling rather than by the lowest spatial diffusion mode)."""


def pseudo_time_cycle(op: TransportOperator, cycle: int = DEFAULT_CYCLE) -> np.ndarray:
    """(cycle, n_E, B) pseudo-time steps in s, geometric from 1/lambda_lo to 1/lambda_hi.

    lambda_lo: lowest diffusion mode of the interior box (Dirichlet sine mode in z, the J0 zero
    2.405 in r) plus the smallest catastrophic rate on the model's own interior nodes (so that a model solved on a
    taller halo's grid, in a halo group, gets the same steps as alone); lambda_hi: the largest diagonal entry of A.
    """
    if cycle < 2:
        raise ValueError(f"cycle must be >= 2 pseudo-time steps, got {cycle}")
    n_r = op.shape[0]
    n_zi = _interior_length_in_central_steps(op)  # (B,)
    k_z = 0.5 * op.z_a2.max(axis=0)  # D/dz^2, (n_E, B)
    k_r = 0.5 * op.r_a2.max(axis=0)  # D/dr^2
    interior = op.interior_mask()[:, :, 0, :]  # (n_r, n_z, B)
    gamma_min = np.where(interior[:, :, None, :], op.gamma[..., None], np.inf).min(axis=(0, 1))  # (n_E, B)
    lam_lo = (k_z * 4.0 * np.sin(np.pi / (2.0 * (n_zi + 1.0))) ** 2
              + k_r * (2.405 / (n_r - 1.0)) ** 2
              + gamma_min)
    lam_hi = (op.r_a2.max(axis=0) + op.z_a2.max(axis=0) + np.abs(op.p_a2)
              + (op.loss_a2 + op.gamma).max(axis=(0, 1))[:, None])
    lam_lo = lam_lo / TAU_MAX_STRETCH
    lam_hi = np.maximum(lam_hi, lam_lo * 1.0001)
    frac = np.linspace(0.0, 1.0, cycle)[:, None, None]
    return 1.0 / (lam_lo[None] * (lam_hi / lam_lo)[None] ** frac)


def _interior_length_in_central_steps(op: TransportOperator) -> np.ndarray:
    """(B,) length of each model's interior z line in units of the central z step.

    On a uniform grid this is the number of interior rows (GALPROP's grids; the stencil rows fix it exactly).
    On a stretched-halo grid the wider outer cells count for more: a row's step is sqrt(2D/a2), so a row counts
    sqrt(a2_centre / a2_row). Shortley-Weller rows at the halo boundary are counted as one row either way.
    """
    interior = op.z_interior
    a2 = op.z_a2[:, 0, :]  # (n_z, B); the geometric factor is the same at every energy
    centre = a2[a2.shape[0] // 2]
    weight = np.sqrt(centre[None, :] / np.maximum(a2, 1e-300))
    uniform_rows = np.abs(weight - 1.0) < 1e-6
    if uniform_rows[interior].all() or op.z_a1.shape[0] < 3:
        return interior.sum(axis=0)
    edge = interior & ~np.roll(interior, 1, axis=0) | interior & ~np.roll(interior, -1, axis=0)
    return np.where(interior & ~edge, weight, 0.0).sum(axis=0) + (interior & edge).sum(axis=0)


def has_source(q):
    """(B,) 1.0 for models with a non-zero source somewhere, 0.0 for the others (numpy or CuPy, as ``q``).

    The relative residual of a model whose source is zero everywhere has no scale (crprop.solvers.result), so a
    warm start psi0 != 0 would be returned unchanged and called converged (review of session 13: the
    warm start came back instead of 0); the solvers therefore start such a model from its exact answer, 0."""
    return (q != 0).any(axis=(0, 1, 2)).astype(q.dtype)


COMPACT_FRACTION = 0.125
"""A batch is re-packed without its converged models once they are at least this share of the (packed) batch
being iterated. A re-pack gathers Q and psi (two field copies plus the small operator tables); one Douglas step of
the numba backend makes about a dozen passes over fields (residual, three line solves, the update and the
residual norm, each reading and writing whole fields; a count, not a timing). Until then a converged model is
still computed but its update is discarded, so the result does not depend on when (or whether) the batch is
re-packed."""


def iterate(backend, op: TransportOperator, q: np.ndarray, tol: float, max_steps: int,
            psi0: np.ndarray | None = None, cycle: int = DEFAULT_CYCLE
            ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray]:
    """Douglas iteration with a per-model stop; returns (psi, residual (B,), steps, model_steps (B,)).

    Every model stops at the first step whose residual (of the psi before that step's update) is <= tol: its
    psi and residual are frozen there, ``model_steps`` holds that step, and the models still iterating are
    re-packed into a smaller batch (COMPACT_FRACTION), so a batch no longer pays for its slowest model in every
    model. ``steps`` is the batch's count (its slowest model; max_steps when some model never converged).
    Models are independent in every kernel, so a model's result equals the one it gets when solved alone.
    """
    taus = pseudo_time_cycle(op, cycle)
    q, psi = op.check_source(q), initial_field(op, psi0)
    backend.reset_dirichlet(op, psi, None)
    psi *= has_source(q)  # a model without any source has the steady state 0, whatever its warm start
    n_models = op.n_models
    res_norm = np.full(n_models, np.inf)
    model_steps = np.full(n_models, max_steps)
    live = np.arange(n_models)  # models of the packed batch, as indices into the whole batch
    done = np.zeros(n_models, dtype=bool)  # per packed model: converged, update discarded
    q_scales = residual_scale(slice_norms(q))  # (n_E, B): the source is fixed, so computed once
    op_l, q_l, psi_l, taus_l, qn_l = op, q, psi.copy(), taus, q_scales  # psi: the result, written per model
    spare = None  # (psi, residual) buffers of the next step: fresh fields cost 10-15 % of a numba step (page faults)
    for step in range(max_steps):
        if spare is None:
            spare = (np.empty_like(psi_l), np.empty_like(psi_l))
        psi_new, res = backend.douglas_step(op_l, taus_l[step % cycle], psi_l, q_l, out=spare[0], res_out=spare[1])
        rel = relative_residual(res, q_l, qn_l)
        hit = ~done & (rel <= tol)
        if hit.any():
            idx = live[hit]
            res_norm[idx] = rel[hit]
            model_steps[idx] = step
            psi[..., idx] = psi_l[..., hit]
            done |= hit
        if done.all():
            return psi, res_norm, step, model_steps
        psi_new[..., done] = psi_l[..., done]  # frozen until the batch is re-packed
        spare = (psi_l, res)  # both are read for the last time above (converged models are copied into psi)
        psi_l = psi_new
        if done.sum() >= COMPACT_FRACTION * done.size:
            keep = np.nonzero(~done)[0]
            live = live[keep]
            op_l = op.select(live)
            q_l = np.ascontiguousarray(q[..., live])
            psi_l = np.ascontiguousarray(psi_l[..., keep])
            taus_l = np.ascontiguousarray(taus[..., live])
            qn_l = q_scales[:, live]
            done = np.zeros(live.size, dtype=bool)
            spare = None
    left = live[~done]
    psi[..., left] = psi_l[..., ~done]
    res_norm[left] = relative_residual(backend.residual(op_l, psi_l, q_l), q_l, qn_l)[~done]
    return psi, res_norm, max_steps, model_steps
