"""`exact` mode: scipy sparse direct solve of A psi = Q per model — the ground truth on small grids."""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

from crprop.operator import TransportOperator

_DIRECTIONS = ("r", "z", "p")


def assemble_matrix(op: TransportOperator, model: int) -> sp.csr_matrix:
    """Sparse matrix of A for one model on the flattened (r, z, E) index; Dirichlet rows = identity."""
    n_r, n_z, n_e, _ = op.shape
    n = n_r * n_z * n_e
    idx = np.arange(n).reshape(n_r, n_z, n_e)
    interior = op.interior_mask()[..., model][:, :, 0]
    interior3 = np.broadcast_to(interior[:, :, None], (n_r, n_z, n_e))
    rows, cols, vals = [], [], []
    a1p, a2p, a3p = op.p_coefficients(residual=True)
    coeffs = {
        "r": (op.r_a1[:, None, :, model], op.r_a2[:, None, :, model], op.r_a3[:, None, :, model], 0),
        "z": (op.z_a1[None, :, :, model], op.z_a2[None, :, :, model], op.z_a3[None, :, :, model], 1),
        "p": (a1p[..., model], a2p[..., model], a3p[..., model], 2),
    }
    diag = np.zeros((n_r, n_z, n_e))
    for d in _DIRECTIONS:
        a1, a2, a3, ax = coeffs[d]
        a1, a2, a3 = (np.broadcast_to(a, (n_r, n_z, n_e)) for a in (a1, a2, a3))
        diag += a2
        for coef, step in ((a1, -1), (a3, 1)):
            src = [slice(None)] * 3
            dst = [slice(None)] * 3
            if step < 0:
                src[ax], dst[ax] = slice(1, None), slice(None, -1)
            else:
                src[ax], dst[ax] = slice(None, -1), slice(1, None)
            mask = interior3[tuple(src)] & interior3[tuple(dst)]
            rows.append(idx[tuple(src)][mask])
            cols.append(idx[tuple(dst)][mask])
            vals.append(-coef[tuple(src)][mask])
    if op.high_order_losses:  # second-order loss stencil: +res_loss_a4 psi_k+2 (discretization.LOSS_SCHEMES)
        src, dst = (slice(None), slice(None), slice(None, -2)), (slice(None), slice(None), slice(2, None))
        mask = interior3[src] & interior3[dst]
        rows.append(idx[src][mask])
        cols.append(idx[dst][mask])
        vals.append(op.res_loss_a4[src][mask])
    diag = np.where(interior3, diag, 1.0)
    rows.append(idx.ravel())
    cols.append(idx.ravel())
    vals.append(diag.ravel())
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))


def solve_exact(op: TransportOperator, q: np.ndarray) -> np.ndarray:
    """psi (n_r, n_z, n_E, B) solving A psi = Q exactly (SuperLU), Dirichlet nodes 0."""
    q = op.check_source(q)
    interior = op.interior_mask()
    psi = np.empty_like(q)
    for b in range(op.n_models):
        rhs = np.where(interior[..., b], q[..., b], 0.0).ravel()
        mat = assemble_matrix(op, b).tocsc()
        psi[..., b] = spla.spsolve(mat, rhs).reshape(q.shape[:3])
    return psi
