"""Inference on the measured spectra (beyond the paper, which only fed pseudo-spectra).

The machines need the five element spectra Li, Be, B, C, O (normalisation-free, LIS) on the training
energy grid (84 bins at paper scale, 1e-3 ... 1.1e5 GeV/n), but the data cover only parts of it
(Voyager ~0.01-0.1 GeV/n, ACE ~0.1-0.3 GeV/n, AMS-02 ~1-1e3 GeV/n; top-of-atmosphere for ACE/AMS-02).
The spectra are built explicitly as

    N_X(E) = q_C Phi_X^ref(E) * r_X(E),

with Phi^ref the LIS of the best-fitting collected mock (minimum chi^2_tot; its q_C, xi's and phi
profiled by :func:`crnet.likelihood.chi2`) and r_X the data-to-reference ratio: at every data point
r = F / M^ref (M^ref: the reference model as the likelihood predicts that point - scaled by its
normalisation, force-field modulated for top-of-atmosphere blocks). log r is interpolated linearly in
log E between data points (this bridges the gaps, e.g. 0.3-1 GeV/n, with the reference shape) and held
constant beyond the lowest / highest data point (there the input is the reference shape scaled to the
nearest data). Transferring r from the top-of-atmosphere energy to the same LIS energy neglects the
force-field energy shift of r itself: exact where r is smooth over ~phi Z/A (a few hundred MeV/n),
i.e. everywhere above ~1 GeV/n. ``coverage`` reports, per element, the share of grid bins inside the
measured energy range. Each machine's prediction is then re-simulated and its chi^2_tot reported.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from crnet.data import get_dataset
from crnet.features import FEATURE_SPECIES, features_from_raw, species_rows
from crnet.feedback import SimConfig, clip_to_box, read_in_row_order, resimulate
from crnet.likelihood import RATIO_PARAMETERS, block_predictions, chi2
from crnet.store import MockStore
from crnet.store_read import spectra_from_flux
from crprop.params import PARAM_NAMES


def measured_inputs(store: Path | str, dataset: str = "paper") -> dict[str, Any]:
    """Normalisation-free measured spectra N_X (1, 5, n_E) on the store's grid (module docstring), with the
    reference record, its chi^2_tot and the per-element coverage; raw flux in m^-2 s^-1 sr^-1 (GeV/n)^-1."""
    ds = get_dataset(dataset)
    with MockStore.open(store, "r") as st:
        c = np.where(st.read("converged"), st.read("chi2"), np.inf)
        ref = int(np.argmin(c))
        flux = st.read("flux", np.array([ref])).astype(np.float64)
        species, energies = st.species, st.ekin_gev_per_n
    spectra = spectra_from_flux(flux, species, energies)
    res = chi2(spectra, ds)
    q_c = float(res.q_c[0])
    scale = {sp: q_c * (float(res.ratios[RATIO_PARAMETERS[sp]][0]) if sp in RATIO_PARAMETERS else 1.0)
             for sp in FEATURE_SPECIES}
    phi = {key: float(v[0]) for key, v in res.phi_by_period.items()}
    # the reference model at every data point exactly as the chi^2 predicted it (isotope-resolved for rigidity)
    reference = block_predictions(spectra, ds.blocks, [None if b.lis else phi[ds.period_of(b)] for b in ds.blocks])
    raw = flux[:, species_rows(species, FEATURE_SPECIES), :]
    ratio = np.ones((1, len(FEATURE_SPECIES), energies.size))
    coverage = {}
    for k, sp in enumerate(FEATURE_SPECIES):
        e_pts, r_pts = [], []
        for b, pred in zip(ds.blocks, reference, strict=True):
            if b.species != sp:
                continue
            m = scale[sp] * pred[0]
            e_pts.append(b.ekin_gev_per_n)
            r_pts.append(b.flux / m)
        if not e_pts:
            coverage[sp] = 0.0
            continue
        e, r = np.concatenate(e_pts), np.concatenate(r_pts)
        order = np.argsort(e)
        e, logr = np.log(e[order]), np.log(r[order])
        ratio[0, k] = np.exp(np.interp(np.log(energies), e, logr))
        coverage[sp] = float(np.mean((energies >= np.exp(e[0])) & (energies <= np.exp(e[-1]))))
    n_flux = raw * ratio
    return {"raw_flux": n_flux, "q_c": q_c, "energies": energies, "reference_record": ref,
            "reference_chi2": float(res.chi2_tot[0]),
            "phi_mv": phi.get("") if list(phi) == [""] else (phi or None), "coverage": coverage}


def predict_measured(models: dict[str, str], out: Path | str, store: Path | str, dataset: str = "paper",
                     sim: SimConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Predict the parameters of the measured spectra with every machine {name: model file}, re-simulate
    each prediction and compute its chi^2_tot against ``dataset``; writes ``<out>/measured.json``."""
    from crnet.machines.modelfile import Predictor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim = sim or SimConfig()
    inp = measured_inputs(store, dataset)
    feats, ok = features_from_raw(inp["raw_flux"], inp["q_c"], inp["energies"], strict=False)
    if not ok.all():
        raise ValueError("measured spectra give non-positive features (check the data set's coverage)")
    result: dict[str, Any] = {k: v for k, v in inp.items() if k not in ("raw_flux", "energies")}
    result["dataset"], result["machines"] = dataset, {}
    to_simulate: dict[str, np.ndarray] = {}
    for name, path in models.items():
        theta = Predictor.load(path).predict(feats, inp["energies"])
        p, good = clip_to_box(theta)
        result["machines"][name] = {"params": dict(zip(PARAM_NAMES, map(float, theta[0]), strict=True)),
                                    "chi2_tot": None}
        if good[0]:
            to_simulate[name] = p[0]
    if to_simulate:  # every machine's prediction in one solver call
        resim, key_file = out / "resim.h5", out / "resim_key.json"
        params = np.stack(list(to_simulate.values()))
        sim_here = SimConfig(**{**sim.__dict__, "dataset": dataset})
        key = json.dumps({"params": params.tolist(), "sim": [sim_here.grid.settings(), sim_here.mode, sim_here.tol,
                                                               sim_here.max_steps, dataset]}, sort_keys=True)
        if not key_file.is_file() or key_file.read_text() != key:  # a store of other predictions or settings
            resim.unlink(missing_ok=True)
            key_file.write_text(key)
        resimulate(params, resim, sim_here, progress)
        with MockStore.open(resim, "r") as st:
            chi2, converged = read_in_row_order(st, "chi2"), read_in_row_order(st, "converged")
        for i, name in enumerate(to_simulate):
            result["machines"][name].update(chi2_tot=float(chi2[i]), converged=bool(converged[i]))
    tmp = out / "measured.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out / "measured.json")
    return result
