"""Predictions of a trained model on a spectra file, and writing them (HDF5 or CSV).

Accepted inputs:

* a mock store or pseudo-data store (:mod:`crnet.store`): features from the stored fluxes and q_C
  (:mod:`crnet.features`), read in blocks; the stored parameters are kept as the truth. Records whose solve
  did not converge are skipped (listed in ``skipped``, as training leaves them out), and a store whose q_C was
  profiled against another data set than the model's is refused;
* a spectra file of :mod:`crnet.spectra_io` (``flux_lis``, no normalisations): q_C is profiled against a
  data set with :func:`crnet.likelihood.chi2` (the normalisations are determined by chi^2, paper Sec. 4.3),
  then the features are built the same way; its ``params`` are kept as the truth when they are the 10
  Table 1 columns. Its models whose solve did not converge (``converged`` false) are unusable inputs: refused,
  or left out with ``skip_invalid``, like records with unusable fluxes (the file was named on purpose, unlike
  the routine failures of a store).

A Check Machine classifies the file's parameters instead of reading spectra: every record with finite parameters,
converged or not, since it reads no flux (review by helper-110, session 23: this said nothing, and the sentence on
skipped records above read as if it applied to it too).
"""

from __future__ import annotations

import csv
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from crnet.data import DATASETS, DEFAULT_DATASET
from crnet.features import FEATURE_SPECIES, features_from_raw, relative_change
from crnet.likelihood import chi2
from crnet.machines.data import DEFAULT_BLOCK_SIZE, StoreReader
from crnet.machines.modelfile import Predictor, file_sha256
from crnet.paths import atomic_write
from crnet.spectra_io import read_spectra_h5
from crnet.store import FORMAT as STORE_FORMAT
from crprop.params import PARAM_NAMES, PARAM_UNITS

PREDICTION_SUFFIXES: tuple[str, ...] = (".csv", ".h5", ".hdf5")
"""File name endings :func:`write_predictions` writes (case-insensitive): '.csv', or HDF5 for the others."""


@dataclass
class Predictions:
    """Predictions for the usable records of a file.

    index : (n,) record numbers in the input file; params : (n, 10) predicted parameters in
    PARAM_NAMES units (regressors) or None; prob_inside : (n,) Check Machine probabilities or None;
    truth : (n, 10) parameters stored in the input (None when absent); skipped : records left out
    because their spectra are unusable (non-positive / non-finite fluxes of Li, Be, B, C, O) or their solve did
    not converge (in a mock store always; in a spectra file with ``skip_invalid``).
    """

    index: np.ndarray
    params: np.ndarray | None
    prob_inside: np.ndarray | None
    truth: np.ndarray | None
    skipped: np.ndarray
    outside_box: np.ndarray | None = None


def _is_store(path: Path) -> bool:
    try:
        with h5py.File(path, "r", locking=False) as f:
            fmt = f.attrs.get("format")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
    return (fmt.decode() if isinstance(fmt, bytes) else fmt) == STORE_FORMAT


def _collect(index: list, pred: list, truth: list) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    idx = np.concatenate(index) if index else np.zeros(0, dtype=np.int64)
    p = np.concatenate(pred) if pred else np.zeros((0, len(PARAM_NAMES)))
    t = np.concatenate(truth) if truth and all(x is not None for x in truth) else None
    return idx, p, t


def check_model_dataset(metadata: Mapping[str, Any], dataset: str, model: Path | str = "the model") -> None:
    """ValueError when ``dataset`` is not the data set the model (its ``metadata``) was trained against: its inputs'
    q_C is normalised to that one (features 0-2; another data set moves it by up to 2.4x, 0.38 dex, review of
    session 13). A model that records none passes. ``model`` names it in the message. An unknown name is refused as
    such first (a typo was answered with "use 'paper', or a model trained against 'paperr'")."""
    if dataset not in DATASETS:
        raise ValueError(f"dataset {dataset!r}: unknown data set; known: {', '.join(DATASETS)}")
    trained_on = metadata.get("dataset")
    if trained_on is not None and dataset != trained_on:
        raise ValueError(f"dataset {dataset!r}: {model}'s inputs were normalised (q_C) against {trained_on!r}; "
                         f"use {trained_on!r}, or a model trained against {dataset!r}")


def predict_file(predictor: Predictor, path: Path | str, dataset: str | None = None, skip_invalid: bool = False,
                 block_size: int = DEFAULT_BLOCK_SIZE) -> Predictions:
    """Predict every record of ``path`` (see the module docstring). Records with unusable spectra (in a spectra
    file also those whose solve did not converge) raise ValueError unless ``skip_invalid``, which leaves them out
    (listed in ``skipped``); a file with no records raises ValueError naming it. A result with every record
    skipped is returned empty: the caller decides (``crnet predict`` fails on it).

    ``dataset``: the data set q_C of a spectra file (no stored normalisations) is profiled against; None = the
    model's (its metadata ``dataset``, else crnet.data.DEFAULT_DATASET). Another data set than the model's is
    refused: q_C enters features 0-2, and another data set moves it by up to 2.4x (0.38 dex, review of session 13)."""
    path = Path(path)
    trained_on = predictor.model.metadata.get("dataset")
    if dataset is None:
        dataset = trained_on or DEFAULT_DATASET
    check_model_dataset(predictor.model.metadata, dataset)
    if not path.is_file():
        raise ValueError(f"{path}: no such spectra file")
    store = _is_store(path)
    if predictor.model.is_check:
        params = _file_params(path, store)
        if params is None:
            raise ValueError(f"{path}: no Table 1 parameters to classify")
        if params.shape[0] == 0:
            raise ValueError(f"{path}: holds no records to classify")
        ok = np.all(np.isfinite(params), axis=1)
        _bad(ok, skip_invalid, path, "non-finite parameters")
        idx = np.flatnonzero(ok)
        return Predictions(idx, None, predictor.classify(params[idx]), params[idx], np.flatnonzero(~ok))
    index, pred, truth, skipped = [], [], [], []
    if store:
        with StoreReader(path) as reader:
            if reader.n_records == 0:
                raise ValueError(f"{path}: holds no committed records to predict from")
            profiled_on = reader.info.attrs.get("dataset")
            if profiled_on is not None and profiled_on != dataset:
                model_side = (f"the model's inputs against {dataset!r}" if trained_on is not None else
                              f"the model records no data set and {dataset!r} is used")
                raise ValueError(f"{path}: its normalisations (q_C) were profiled against data set {profiled_on!r}, "
                                 f"{model_side}; q_C enters features 0-2, so predict on a store of the model's data "
                                 "set")
            converged = reader.converged()
            for lo in range(0, reader.n_records, block_size):
                hi = min(lo + block_size, reader.n_records)
                feats, ok = reader.features(lo, hi)
                _bad(ok | ~converged[lo:hi], skip_invalid, path, "unusable spectra", offset=lo)
                ok &= converged[lo:hi]  # a non-converged solve is not a spectrum to predict from
                index.append(lo + np.flatnonzero(ok))
                skipped.append(lo + np.flatnonzero(~ok))
                pred.append(predictor.predict(feats[ok], reader.info.energies))
                truth.append(reader.params(lo, hi)[ok])
    else:
        content = read_spectra_h5(path)
        spectra = content.spectra
        raw = np.stack([spectra.flux(sp) for sp in FEATURE_SPECIES], axis=1)
        if raw.shape[0] == 0:
            raise ValueError(f"{path}: holds no spectra to predict from")
        q_c = chi2(spectra, dataset).q_c
        feats, ok = features_from_raw(raw, q_c, spectra.ekin_gev_per_n, strict=False)
        # a solve that did not converge is no spectrum to predict from, here as in a store; the file was named on
        # purpose, so it is refused unless --skip-invalid (it was predicted as if converged: walk-through by
        # helper-87, session 21)
        converged = np.asarray(spectra.converged, dtype=bool)
        _bad(converged, skip_invalid, path, _not_converged(spectra.residual, converged))
        _bad(ok | ~converged, skip_invalid, path, "unusable spectra")
        ok &= converged
        index.append(np.flatnonzero(ok))
        skipped.append(np.flatnonzero(~ok))
        pred.append(predictor.predict(feats[ok], spectra.ekin_gev_per_n))
        params = _table1_params(content)  # the file read once (it was read and checked a second time here)
        truth.append(None if params is None else params[ok])
    idx, p, t = _collect(index, pred, truth)
    return Predictions(idx, p, None, t, np.concatenate(skipped), predictor.model.transform.outside_box(p))


def _bad(ok: np.ndarray, skip: bool, path: Path, what: str, offset: int = 0) -> None:
    if not skip and not ok.all():
        first = offset + int(np.argmin(ok))
        raise ValueError(f"{path}: {int((~ok).sum())} records with {what} (first: record {first}); the model "
                         "refuses them - pass --skip-invalid to leave them out")


def _not_converged(residual: np.ndarray, converged: np.ndarray) -> str:
    """What :func:`_bad` says of a spectra file's records whose solve did not converge: the dataset that says so
    and their largest residual, so that the message shows why they are refused."""
    worst = float(np.max(residual[~converged])) if (~converged).any() else 0.0
    return f"solves that did not converge (dataset 'converged' false, largest residual {worst:.3g})"


def _file_params(path: Path, store: bool) -> np.ndarray | None:
    if store:
        with StoreReader(path) as reader:
            return reader.params()
    return _table1_params(read_spectra_h5(path))


def _table1_params(content) -> np.ndarray | None:
    """The Table 1 parameters of a read spectra file (crnet.spectra_io.SpectraH5), or None when it holds others."""
    return content.params if list(content.param_names) == list(PARAM_NAMES) else None


def prediction_suffix(out: Path | str, what: str = "output") -> str:
    """The lower-case suffix of ``out`` (one of :data:`PREDICTION_SUFFIXES`); ValueError naming ``what`` (an option
    such as '--out') and the file otherwise. Run before predicting, so a bad name fails before the work."""
    suffix = Path(out).suffix.lower()
    if suffix not in PREDICTION_SUFFIXES:
        allowed = ", ".join(PREDICTION_SUFFIXES[:-1]) + f" or {PREDICTION_SUFFIXES[-1]}"
        raise ValueError(f"{what} {out}: must end in {allowed}")
    return suffix


def write_predictions(pred: Predictions, out: Path | str, meta: dict) -> None:
    """Write to ``out``: '.csv' (one row per record) or '.h5' / '.hdf5' (datasets + attributes); other endings are
    refused (:func:`prediction_suffix`)."""
    out = Path(out)
    if prediction_suffix(out) == ".csv":
        _write_csv(pred, out)
    else:
        _write_h5(pred, out, meta)


def _columns(pred: Predictions) -> tuple[list[str], np.ndarray]:
    names = ["record"]
    cols = [pred.index.astype(np.float64)[:, None]]
    if pred.params is not None:
        names += [f"pred_{n}" for n in PARAM_NAMES]
        cols.append(pred.params)
        names.append("outside_prior_box")
        cols.append(pred.outside_box.any(axis=1).astype(np.float64)[:, None])
    if pred.prob_inside is not None:
        names.append("prob_inside")
        cols.append(pred.prob_inside[:, None])
    if pred.truth is not None:
        names += [f"true_{n}" for n in PARAM_NAMES]
        cols.append(pred.truth)
    return names, np.concatenate(cols, axis=1)


def _write_csv(pred: Predictions, out: Path) -> None:
    names, table = _columns(pred)
    int_cols = {"record", "outside_prior_box"}
    with open(out, "w", newline="") as f:
        f.write("# units: " + ", ".join(f"{n}={PARAM_UNITS[n] or '1'}" for n in PARAM_NAMES) + "\n")
        writer = csv.writer(f)
        writer.writerow(names)
        for row in table:
            writer.writerow([str(int(v)) if n in int_cols else repr(float(v)) for n, v in zip(names, row, strict=True)])


def _write_h5(pred: Predictions, out: Path, meta: dict) -> None:
    """Write the HDF5 predictions file ``out`` through :func:`crnet.paths.atomic_write`."""
    str_t = h5py.string_dtype("utf-8")

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("record", data=pred.index)
            f.create_dataset("skipped", data=pred.skipped)
            for name, arr in (("params_pred", pred.params), ("params_true", pred.truth)):
                if arr is not None:
                    d = f.create_dataset(name, data=arr)
                    d.attrs.create("names", np.array(PARAM_NAMES, dtype=object), dtype=str_t)
                    d.attrs.create("units", np.array([PARAM_UNITS[n] for n in PARAM_NAMES], dtype=object), dtype=str_t)
            if pred.outside_box is not None:
                f.create_dataset("outside_prior_box", data=pred.outside_box)
            if pred.prob_inside is not None:
                f.create_dataset("prob_inside", data=pred.prob_inside)
            for key, value in meta.items():
                f.attrs[key] = str(value)

    atomic_write(out, write)


def summary(pred: Predictions) -> dict:
    """Counts, share outside the prior box (per parameter and any), and relative errors against the truth."""
    out: dict = {"n_predicted": int(pred.index.size), "n_skipped": int(pred.skipped.size)}
    if pred.prob_inside is not None:
        out["frac_classified_inside"] = float((pred.prob_inside >= 0.5).mean()) if pred.index.size else None
        return out
    if pred.index.size == 0:
        return out
    out["frac_outside_box_any"] = float(pred.outside_box.any(axis=1).mean())
    out["frac_outside_box"] = {n: float(pred.outside_box[:, i].mean()) for i, n in enumerate(PARAM_NAMES)}
    if pred.truth is not None:
        rel = np.abs(relative_change(pred.truth, pred.params))  # breaks as log10 R, like tau
        out["rel_err_median"] = {n: float(np.nanmedian(rel[:, i])) for i, n in enumerate(PARAM_NAMES)}
    return out


def model_meta(model_path: Path | str) -> dict:
    """Attributes of a prediction file that identify the model."""
    return {"model": str(Path(model_path).resolve()), "model_sha256": file_sha256(model_path)}
