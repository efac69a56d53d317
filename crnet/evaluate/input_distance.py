"""How far an input spectrum lies from the spectra the machines learned from (out-of-distribution check).

A machine's prediction is an interpolation only where its input resembles training spectra. The measured
spectra can fall outside: where the propagation model cannot fit them (on the paper data set the 9 Voyager 1 B
points at 0.009-0.11 GeV/n lie 1.2-3.0 times above the best mock, 70 of its chi^2 450) or where their gaps
are filled (:mod:`crnet.evaluate.measured`). This module measures that distance in the machines' own input
space, the log Table 2 features (8 channels x n_E bins):

    d(x, y) = 100 ln(10) sqrt(mean over (channel, bin) of (log10 x - log10 y)^2)     [% , RMS relative difference]

and compares it with the distances of in-distribution inputs:

* ``distance`` of an input: d to the nearest converged record of the store (the scan's mocks, the held-out test
  centres included: a test pseudo-spectrum's own centre is then among them, and its distance is the noise alone);
* ``baseline``: the same for up to :data:`N_BASELINE` pseudo-spectra made from the store's own records with
  the paper's 5 % fluctuations (:func:`crnet.pseudodata.paper_noise`), each measured against the *other*
  records, so that it includes both the noise and the spacing of the mocks, as for a held-out test spectrum.

An input beyond the baseline's :data:`OUTSIDE_QUANTILE` quantile is flagged ``outside_training_range``: the
machines were never shown anything like it, and their prediction is an extrapolation. The channel and energy of
the largest difference to the nearest record say where the input departs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from crnet.features import CHANNEL_NAMES, FEATURE_SPECIES, channel_log_shift
from crnet.machines.data import StoreReader
from crnet.pseudodata import PAPER_MAX_RELATIVE, paper_noise
from crnet.store_read import READ_BLOCK_RECORDS

N_BASELINE = 1000
"""Pseudo-spectra the in-distribution baseline is measured on (at most one per record). With 200 the 95 % quantile
scattered by ~8 % between seeds (review of session 14); 1000 cost nothing next to the re-simulations."""

OUTSIDE_QUANTILE = 0.95
"""An input farther from the store than this quantile of the baseline distances is flagged as outside."""

MAX_STORE_RECORDS = 20_000
"""Records compared with (a seeded random subset of larger stores; the baseline uses the same subset, so the
flag stays consistent; 20,000 x 672 features are 108 MB)."""

DISTANCE_CHUNK = 64
"""Inputs compared with the whole store at a time (memory: a few chunk x records float64 temporaries, 10 MB each
at 20,000 records)."""

PERCENT_PER_LOG10 = 100.0 * np.log(10.0)
"""A difference of log10 features in % of the value (ln x ~ relative difference for small ones)."""


def _store_records(reader: StoreReader, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(log10 features (n, 8 n_E), record indices (n,)) of the usable converged records (at most
    :data:`MAX_STORE_RECORDS` of them); every block of the store is read once."""
    chosen = np.flatnonzero(reader.converged())
    if chosen.size > MAX_STORE_RECORDS:
        chosen = np.sort(rng.choice(chosen, size=MAX_STORE_RECORDS, replace=False))
    feats, records = [], []
    for start in range(0, reader.n_records, READ_BLOCK_RECORDS):
        stop = min(start + READ_BLOCK_RECORDS, reader.n_records)
        here = chosen[(chosen >= start) & (chosen < stop)] - start
        if here.size == 0:
            continue
        f, ok = reader.features(start, stop)
        feats.append(f[here][ok[here]])
        records.append(here[ok[here]] + start)
    n = sum(r.size for r in records)
    if n < 2:
        raise ValueError(f"{reader.info.path}: fewer than 2 converged records with usable features; "
                         "no distance to the training spectra can be measured")
    return np.concatenate(feats).reshape(n, -1), np.concatenate(records)


def nearest_records(inputs: np.ndarray, reference: np.ndarray,
                    exclude: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(RMS distance in %, row of ``reference``) of the nearest reference row for every input row.

    ``inputs`` (m, d), ``reference`` (n, d): log10 features; ``exclude`` (m,) optional row of ``reference`` that
    input i may not match (its own source record)."""
    x = np.asarray(inputs, dtype=np.float64)
    ref = np.asarray(reference, dtype=np.float64)
    if x.ndim != 2 or ref.ndim != 2 or x.shape[1] != ref.shape[1]:
        raise ValueError(f"inputs {x.shape} and reference {ref.shape} must be (m, d) and (n, d) with the same d")
    if not (np.isfinite(x).all() and np.isfinite(ref).all()):
        raise ValueError("nearest_records: features must be finite")
    # nearest row by |x|^2 + |y|^2 - 2 x.y (a chunk x n matrix, not chunk x n x d), on centred features to limit
    # the cancellation; the distance to the chosen row is then computed directly
    centre = ref.mean(axis=0)
    xc, rc = x - centre, ref - centre
    ref_sq = np.einsum("ij,ij->i", rc, rc)
    row = np.empty(x.shape[0], dtype=np.int64)
    for start in range(0, x.shape[0], DISTANCE_CHUNK):
        block = xc[start:start + DISTANCE_CHUNK]
        sq = np.einsum("ij,ij->i", block, block)[:, None] + ref_sq[None, :] - 2.0 * block @ rc.T
        if exclude is not None:
            sq[np.arange(block.shape[0]), np.asarray(exclude)[start:start + DISTANCE_CHUNK]] = np.inf
        row[start:start + block.shape[0]] = np.argmin(sq, axis=1)
    dist = PERCENT_PER_LOG10 * np.sqrt(np.mean((x - ref[row]) ** 2, axis=1))
    return dist, row


def baseline_distances(feats: np.ndarray, energies: np.ndarray, rng: np.random.Generator,
                       n: int = N_BASELINE) -> np.ndarray:
    """Distances (%) of ``n`` pseudo-spectra (5 % paper noise on the element fluxes) of rows of ``feats`` (log10
    features (N, 8 n_E) on the grid ``energies``, GeV/n) to the other rows. The noise enters the log features as
    :func:`crnet.features.channel_log_shift` of log10(1 + eps), exactly as the features of the noisy fluxes."""
    pick = np.sort(rng.choice(feats.shape[0], size=min(n, feats.shape[0]), replace=False))
    noise = paper_noise(rng, (pick.size, len(FEATURE_SPECIES), energies.size), PAPER_MAX_RELATIVE)
    shift = channel_log_shift(np.log10(noise), energies).reshape(pick.size, -1)
    return nearest_records(feats[pick] + shift, feats, exclude=pick)[0]


def input_distances(store: Path | str, inputs: np.ndarray, seed: int = 0, n_baseline: int = N_BASELINE
                    ) -> dict[str, Any]:
    """Distance of every input (log10 features (m, 8, n_E) on the store's grid) to the store's converged records,
    the in-distribution baseline and the flag (module docstring). Returns a JSON-ready dict."""
    x = np.asarray(inputs, dtype=np.float64)
    with StoreReader(store) as reader:
        n_e = reader.info.energies.size
        if x.ndim != 3 or x.shape[1:] != (len(CHANNEL_NAMES), n_e):
            raise ValueError(f"inputs must be (m, {len(CHANNEL_NAMES)}, {n_e}) features on the store's grid, "
                             f"got {x.shape}")
        rng = np.random.default_rng(seed)
        feats, records = _store_records(reader, rng)
        energies = reader.info.energies
    base = baseline_distances(feats, energies, rng, n_baseline)
    dist, row = nearest_records(x.reshape(x.shape[0], -1), feats)
    limit = float(np.quantile(base, OUTSIDE_QUANTILE))
    per_input = []
    for i in range(x.shape[0]):
        diff = PERCENT_PER_LOG10 * (x[i] - feats[row[i]].reshape(x.shape[1:]))
        ch, k = np.unravel_index(int(np.argmax(np.abs(diff))), diff.shape)
        per_input.append({"distance_percent": float(dist[i]), "nearest_record": int(records[row[i]]),
                          "outside_training_range": bool(dist[i] > limit),
                          "largest_difference": {"channel": CHANNEL_NAMES[ch], "bin": int(k),
                                                 "energy_gev_per_n": float(energies[k]),
                                                 "percent": float(diff[ch, k])}})
    return {"inputs": per_input,
            "baseline": {"n": int(base.size), "median_percent": float(np.median(base)),
                         "outside_quantile": OUTSIDE_QUANTILE, "outside_limit_percent": limit,
                         "noise_max_relative": PAPER_MAX_RELATIVE}}
