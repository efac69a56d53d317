"""Inference on the measured spectra (beyond the paper, which only fed pseudo-spectra).

The machines need the five element spectra Li, Be, B, C, O (normalisation-free, LIS) on the training
energy grid (84 bins at paper scale, 1e-3 ... 1.1e5 GeV/n), but the data cover only parts of it
(Voyager ~0.01-0.1 GeV/n, ACE ~0.1-0.3 GeV/n, AMS-02 ~1-1e3 GeV/n; top-of-atmosphere for ACE/AMS-02).
The spectra are built explicitly as

    N_X(E) = q_C Phi_X^ref(E) * r_X(E),

with Phi^ref the LIS of a reference mock (by default the collected mock of least chi^2_tot against the data set;
its q_C, xi's and phi profiled by :func:`crnet.likelihood.chi2`) and r_X the data-to-reference ratio: at every
data point r = F / M^ref (M^ref: the reference model as the likelihood predicts that point - scaled by its
normalisation, force-field modulated for top-of-atmosphere blocks). A top-of-atmosphere point at E is placed at
the interstellar energy E + (Z / A_eff) phi (GeV/n, phi in GV; A_eff of crnet.data.DEFAULT_ISOTOPE_MIX): under the
force field r_TOA(E) = r_LIS(E + Z phi / A) exactly for one isotope (tests/test_evaluate.py's TOA_CLOSURE_TOL:
a bump placed at the top-of-atmosphere energy comes back at its interstellar one).
log r is interpolated linearly in log E between data points (this bridges the gaps, e.g. 0.3-1 GeV/n, with the
reference shape) and held constant beyond the lowest / highest data point (there the input is the reference shape
scaled to the nearest data).

Every input bin is labelled (``input_source``): 'data' (a data point within half a grid step in log E),
'interpolated' (between data points) or 'extrapolated' (outside the data: the reference mock's shape alone).
``coverage`` is the share of 'data' bins per element. On the paper data set 312 of the 672 inputs are 'data', 91
interpolated and 269 extrapolated (84-bin paper grid), so the prediction leans on the reference mock; the
machines are therefore also run with the next-best references (``n_references``) and the spread of their
predictions is reported with each machine's prediction. Each machine's prediction from the best reference is
re-simulated and its chi^2_tot reported; a prediction outside the prior box is re-simulated clipped into it
(:func:`crnet.feedback.clip_to_box`), so its chi^2_tot is that of the clipped point: ``outside_box`` names the
parameters that were outside, ``params_simulated`` holds the values re-simulated, and ``measured.md`` marks those
cells with a dagger.

How far the measured inputs lie from the scan's mocks is measured in the machines' own feature space
(:mod:`crnet.evaluate.input_distance`) and written with the predictions (``input_distance``, ``measured.md``); an
input beyond 95 % of 5 %-noise pseudo-spectra raises a warning, since no closure test covers a prediction there.
On the paper data set (CPU-scale run, benchmarks/results/pipeline_cpu_s14/measured/) the inputs lie 24 % (RMS)
from the nearest mock against a 95 % quantile of 9.6 %, the largest difference being Voyager 1 B at 0.009 GeV/n
(+101 % in B/C, at data bins): the model family cannot fit those points (70 of the best mock's chi^2 450 from the 9
Voyager B points). Other constructions of the inputs tried on that run are in benchmarks/results/pipeline_cpu.md.
That run's ``measured.json`` / ``measured.md`` predate session 15: their spread over references is in % of the
prediction (``reference_half_range_percent``), not yet in the parameter's units.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from crnet.data import effective_mass_number, get_dataset
from crnet.evaluate.input_distance import input_distances
from crnet.features import (
    CHANNEL_FROM_ELEMENTS,
    CHANNEL_NAMES,
    FEATURE_SPECIES,
    TargetTransform,
    features_from_raw,
    species_rows,
)
from crnet.feedback import SimConfig, clip_to_box, read_in_row_order, resimulate
from crnet.json_files import strict_json_text
from crnet.likelihood import RATIO_PARAMETERS, block_predictions, chi2
from crnet.paths import atomic_write_text
from crnet.store import MockStore
from crnet.store_read import recompute_chi2, spectra_from_flux
from crprop.params import PARAM_NAMES, PARAM_UNITS
from crprop.spectra import SYMBOL_TO_Z

N_REFERENCE_CANDIDATES = 256
"""When the store was scanned against another data set, the reference is the best of this many records of least
stored chi^2, rescored against the requested data set (a full rescoring costs ~13 ms a record with a profiled
phi: 40 min for a 2e5-record store)."""

INPUT_SOURCES: tuple[str, ...] = ("data", "interpolated", "extrapolated")
"""Labels of the measured inputs per (element, bin) (module docstring)."""


def reference_records(store: Path | str, dataset: str, n: int = 1) -> list[int]:
    """The ``n`` converged records of least chi^2_tot against ``dataset`` (stored chi^2 when the store was scanned
    against it, else :data:`N_REFERENCE_CANDIDATES` of them rescored)."""
    with MockStore.open(store, "r") as st:
        c = np.where(st.read("converged"), st.read("chi2"), np.inf)
        if not np.isfinite(c).any():
            raise ValueError(f"{store}: no converged record with a finite chi2 to serve as the reference")
        if str(st.attrs().get("dataset", "")) != dataset:
            rows = np.sort(np.argsort(c, kind="stable")[: min(N_REFERENCE_CANDIDATES, int(np.isfinite(c).sum()))])
            rescored = np.full_like(c, np.inf)
            rescored[rows] = recompute_chi2(st, dataset, rows)[0]
            c = rescored
    order = np.argsort(c, kind="stable")
    return [int(i) for i in order[:n] if np.isfinite(c[i])]


def _grid_labels(energies: np.ndarray, e_data: np.ndarray) -> np.ndarray:
    """0 'data', 1 'interpolated', 2 'extrapolated' for every grid energy (GeV/n), given sorted data energies."""
    log_e, log_d = np.log(energies), np.log(e_data)
    half_step = 0.5 * np.median(np.diff(log_e)) if energies.size > 1 else np.inf
    nearest = np.abs(log_e[:, None] - log_d[None, :]).min(axis=1)
    inside = (log_e >= log_d[0]) & (log_e <= log_d[-1])
    return np.where(nearest <= half_step, 0, np.where(inside, 1, 2))


def measured_inputs(store: Path | str, dataset: str = "paper", reference: int | None = None) -> dict[str, Any]:
    """Normalisation-free measured spectra N_X (1, 5, n_E) on the store's grid (module docstring), with the
    reference record (``None``: :func:`reference_records`' best), its chi^2_tot, the profiled phi, and per element
    the coverage and the label of every bin; raw flux in m^-2 s^-1 sr^-1 (GeV/n)^-1."""
    ds = get_dataset(dataset)
    ref = reference_records(store, dataset)[0] if reference is None else int(reference)
    with MockStore.open(store, "r") as st:
        if not 0 <= ref < st.n_complete:
            raise ValueError(f"reference record {ref} outside the store's 0 .. {st.n_complete - 1}")
        flux = st.read("flux", np.array([ref])).astype(np.float64)
        species, energies = st.species, st.ekin_gev_per_n
    spectra = spectra_from_flux(flux, species, energies)
    res = chi2(spectra, ds)
    q_c = float(res.q_c[0])
    scale = {sp: q_c * (float(res.ratios[RATIO_PARAMETERS[sp]][0]) if sp in RATIO_PARAMETERS else 1.0)
             for sp in FEATURE_SPECIES}
    phi = {key: float(v[0]) for key, v in res.phi_by_period.items()}
    # the reference model at every data point exactly as the chi^2 predicted it (isotope-resolved for rigidity)
    reference_at = block_predictions(spectra, ds.blocks,
                                     [None if b.lis else phi[ds.period_of(b)] for b in ds.blocks])
    raw = flux[:, species_rows(species, FEATURE_SPECIES), :]
    ratio = np.ones((1, len(FEATURE_SPECIES), energies.size))
    labels = np.full((len(FEATURE_SPECIES), energies.size), 2)
    coverage = {}
    for k, sp in enumerate(FEATURE_SPECIES):
        e_pts, r_pts = [], []
        z_over_a = SYMBOL_TO_Z[sp] / effective_mass_number(sp)
        for b, pred in zip(ds.blocks, reference_at, strict=True):
            if b.species != sp:
                continue
            shift = 0.0 if b.lis else z_over_a * phi[ds.period_of(b)] / 1e3  # GeV/n at the interstellar side
            e_pts.append(b.ekin_gev_per_n + shift)
            r_pts.append(b.flux / (scale[sp] * pred[0]))
        if not e_pts:
            coverage[sp] = 0.0
            continue
        e, r = np.concatenate(e_pts), np.concatenate(r_pts)
        order = np.argsort(e)
        e, logr = e[order], np.log(r[order])
        ratio[0, k] = np.exp(np.interp(np.log(energies), np.log(e), logr))
        labels[k] = _grid_labels(energies, e)
        coverage[sp] = float(np.mean(labels[k] == 0))
    return {"raw_flux": raw * ratio, "q_c": q_c, "energies": energies, "reference_record": ref,
            "reference_chi2": float(res.chi2_tot[0]),
            "phi_mv": phi.get("") if list(phi) == [""] else (phi or None), "coverage": coverage,
            "input_source": {sp: [INPUT_SOURCES[i] for i in labels[k]] for k, sp in enumerate(FEATURE_SPECIES)},
            "input_shares": {name: float(np.mean(labels == i)) for i, name in enumerate(INPUT_SOURCES)}}


def _channel_elements(channel: str) -> list[str]:
    """Elements whose flux at a bin enters a feature channel at that bin ('B/C' -> B, C; 'O/C110' -> O: its
    N_C^110 is the 110 GeV/n bin's), from crnet.features.CHANNEL_FROM_ELEMENTS."""
    row = CHANNEL_FROM_ELEMENTS[CHANNEL_NAMES.index(channel)]
    return [FEATURE_SPECIES[e] for e in np.flatnonzero(row)]


def machine_prediction(thetas: np.ndarray) -> tuple[dict[str, Any], np.ndarray | None]:
    """One machine's entry of ``measured.json`` from its predictions (n_references, 10; the best reference's first)
    and the point to re-simulate (``None`` when it cannot be simulated).

    ``params`` is the raw prediction; ``outside_box`` the parameters of it outside the closed prior box (non-finite
    ones included); ``params_simulated`` the prediction clipped into the box (:func:`crnet.feedback.clip_to_box`),
    which is what is re-simulated and what ``chi2_tot`` belongs to (``None`` when not simulated, with
    ``not_simulated_reason``)."""
    thetas = np.atleast_2d(np.asarray(thetas, dtype=np.float64))
    theta = thetas[:1]
    p, good = clip_to_box(theta)
    outside = TargetTransform().outside_box(theta)[0]
    half = 0.5 * (thetas.max(axis=0) - thetas.min(axis=0))
    entry: dict[str, Any] = {
        "params": dict(zip(PARAM_NAMES, map(float, theta[0]), strict=True)), "chi2_tot": None,
        "params_by_reference": [dict(zip(PARAM_NAMES, map(float, t), strict=True)) for t in thetas],
        "reference_half_range": dict(zip(PARAM_NAMES, map(float, half), strict=True)),
        "outside_box": [n for n, o in zip(PARAM_NAMES, outside, strict=True) if o],
        "params_simulated": dict(zip(PARAM_NAMES, map(float, p[0]), strict=True)) if good[0] else None}
    if not good[0]:
        entry["not_simulated_reason"] = ("non-finite prediction" if not np.isfinite(theta).all()
                                         else "R_br1 >= R_br2 after clipping into the prior box")
        return entry, None
    return entry, p[0]


N_REFERENCES = 4
"""Reference mocks the machines are run with (the best and the next ones): their spread says how much of a
prediction comes from the reference's shape where there are no data."""


def predict_measured(models: dict[str, str], out: Path | str, store: Path | str, dataset: str = "paper",
                     sim: SimConfig | None = None, progress: bool = True,
                     n_references: int = N_REFERENCES) -> dict[str, Any]:
    """Predict the parameters of the measured spectra with every machine {name: model file}, re-simulate
    each prediction and compute its chi^2_tot against ``dataset``; writes ``<out>/measured.json``.

    Each machine also predicts from the inputs built on the next ``n_references - 1`` references: ``params`` is
    the best reference's prediction, ``params_by_reference`` all of them and ``reference_half_range`` half their
    range per parameter in its own units (PARAM_UNITS; the input's dependence on the reference mock). Not in % of
    the prediction: eta, delta and the nu's can be near 0, where a percentage says nothing."""
    from crnet.machines.modelfile import Predictor

    if n_references < 1:
        raise ValueError(f"n_references must be >= 1, got {n_references}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sim = sim or SimConfig()
    inputs = [measured_inputs(store, dataset, ref) for ref in reference_records(store, dataset, n_references)]
    inp = inputs[0]
    feats = []
    for i in inputs:
        f, ok = features_from_raw(i["raw_flux"], i["q_c"], i["energies"], strict=False)
        if not ok.all():
            raise ValueError(f"measured spectra on reference record {i['reference_record']} give non-positive "
                             "features (check the data set's coverage)")
        feats.append(f)
    result: dict[str, Any] = {k: v for k, v in inp.items() if k not in ("raw_flux", "energies")}
    result["dataset"], result["machines"] = dataset, {}
    result["reference_records"] = [i["reference_record"] for i in inputs]
    distance = input_distances(store, np.concatenate(feats))
    for i, d in zip(inputs, distance["inputs"], strict=True):  # is the largest difference at data or in a gap?
        big = d["largest_difference"]
        big["input_source"] = {sp: i["input_source"][sp][big["bin"]] for sp in _channel_elements(big["channel"])}
    result["input_distance"] = {"baseline": distance["baseline"],
                                "by_reference": [{"reference_record": i["reference_record"], **d}
                                                 for i, d in zip(inputs, distance["inputs"], strict=True)]}
    if distance["inputs"][0]["outside_training_range"]:
        warnings.warn(outside_message(result["input_distance"]), stacklevel=2)
    to_simulate: dict[str, np.ndarray] = {}
    for name, path in models.items():
        predictor = Predictor.load(path)
        thetas = np.concatenate([predictor.predict(f, inp["energies"]) for f in feats])
        result["machines"][name], point = machine_prediction(thetas)
        if point is not None:
            to_simulate[name] = point
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
    atomic_write_text(out / "measured.json", strict_json_text(result))  # an unconverged chi2_tot: null, not Infinity
    atomic_write_text(out / "measured.md", measured_markdown(result))
    return result


def outside_message(distance: dict[str, Any]) -> str:
    """One sentence on how far the best reference's measured inputs lie from the training spectra."""
    d = distance["by_reference"][0]
    big = d["largest_difference"]
    limit = distance["baseline"]["outside_limit_percent"]
    sources = ", ".join(f"{sp} {src}" for sp, src in big.get("input_source", {}).items())
    where = (f"largest difference {big['percent']:+.0f} % in {big['channel']} at "
             f"{big['energy_gev_per_n']:.3g} GeV/n" + (f" ({sources})" if sources else ""))
    share = f"{100 * distance['baseline']['outside_quantile']:.0f} %"
    if not d["outside_training_range"]:
        return (f"the measured inputs lie {d['distance_percent']:.1f} % (RMS) from the nearest mock of the scan, "
                f"within the range of 5 %-noise pseudo-spectra ({share} below {limit:.1f} %); {where}")
    return (f"the measured inputs lie {d['distance_percent']:.1f} % (RMS) from the nearest mock of the scan, beyond "
            f"{share} of 5 %-noise pseudo-spectra ({limit:.1f} %): the machines extrapolate and their predictions on "
            f"the measured spectra are not covered by the closure tests; {where}")


def measured_markdown(result: dict[str, Any]) -> str:
    """Markdown summary of :func:`predict_measured`'s result: inputs, their distance, each machine's prediction."""
    shares = ", ".join(f"{k} {100 * v:.1f} %" for k, v in result["input_shares"].items())
    lines = [f"# Inference on the measured spectra ({result['dataset']})", "",
             f"Reference mocks (records) {result['reference_records']}; best: chi2_tot {result['reference_chi2']:.2f}.",
             f"Input bins: {shares}.", "", "Input distance: " + outside_message(result["input_distance"]) + ".", "",
             "| machine | chi2_tot of the re-simulated prediction | " + " | ".join(PARAM_NAMES) + " |",
             "|---|---|" + "---|" * len(PARAM_NAMES)]
    any_outside = False
    for name, m in result["machines"].items():
        if m["chi2_tot"] is not None:
            chi = f"{m['chi2_tot']:.1f}"
        else:  # measured.json written before the reason was recorded: non-finite or R_br1 >= R_br2 (clip_to_box)
            chi = f"not simulated ({m.get('not_simulated_reason', 'non-finite prediction or R_br1 >= R_br2')})"
        outside = set(m.get("outside_box", ()))  # absent from measured.json written before it was recorded
        any_outside |= bool(outside)
        cells = [f"{m['params'][p]:.4g}{' †' if p in outside else ''} ± {m['reference_half_range'][p]:.2g}"
                 for p in PARAM_NAMES]
        lines.append(f"| {name} | {chi} | " + " | ".join(cells) + " |")
    units = ", ".join(f"{p} {PARAM_UNITS[p]}" for p in PARAM_NAMES if PARAM_UNITS[p])
    lines += [""]
    if any_outside:
        lines += ["† outside the prior box: chi2_tot is that of the prediction clipped into the box (the values "
                  "re-simulated, `params_simulated` in measured.json).", ""]
    lines += ["± : half the range of the predictions over the reference mocks, in the parameter's units (the "
              f"input's dependence on the reference where there are no data). Units: {units}."]
    return "\n".join(lines) + "\n"
