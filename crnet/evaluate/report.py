"""``crnet evaluate``: closure tests of every machine, Tables 3 and 4, Figs. 5-7, a Markdown + JSON report.

Inputs: trained machines (display name -> model file), optionally the Check Machine, the collected mocks
(the scan store and any further stores, e.g. the feedback loop's re-simulations) and a pseudo-data test
store. For each machine :func:`crnet.feedback.closure_test` predicts theta from the test pseudo-data,
re-simulates it (chi^2_tot for Table 4) and predicts theta' from pseudo-data of the new spectra (tau for
Table 3). chi^2_min is the smallest chi^2_tot over the collected mocks and every re-simulation. The
"MCMC (re-weighted)" row uses the scan records with their chain weights (MCMC stores; weight 1 for
designs); the Check Machine row its true-positive rate on the collected mocks (paper Appendix B). The
re-simulations must repeat the collected mocks' simulations (grid, solver mode, tolerance, step cap), checked before
anything is predicted (:func:`check_evaluation_settings`); test inputs a machine cannot read are left out of the
tables and counted (``closure_counts``: ``n_skipped_inputs``).
Closure results are cached per machine in ``<out>/closure/<slug>/`` so a killed evaluation resumes.

Beside the paper's tables the report gives (:mod:`crnet.evaluate.floor`) the smallest tau interval a linear
unbiased machine can have at the best collected mock (21 extra solves, cached in ``<out>/tau_floor.json``),
and, where the test pseudo-data carry their true parameters, each machine's error against that truth with
the slope of prediction on truth, and 68 % cluster-bootstrap intervals of Table 4's shares (the test
pseudo-spectra share central spectra). A tau interval well under the floor together with a slope well below 1
suggests the machine predicts from its training distribution rather than from the spectrum: Eq. 4.4 measures
self-consistency, not accuracy. With the floor and the truths in hand, Table 4 gets one more row, the
"unbiased-floor oracle": the truths moved by draws from the floor's covariance at each centre and
re-simulated (:func:`crnet.evaluate.floor.oracle_predictions`, 21 solves per centre plus one per test
prediction, resumable, cached in ``<out>/oracle.npz``) - the shares a machine at the floor reaches on the same centres.
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crnet.evaluate.figures import allowed_2d, profile_1d, tau_histograms
from crnet.evaluate.floor import (
    MIN_DISTINCT_TRUTHS_FOR_SLOPE,
    TauFloor,
    centre_labels,
    oracle_predictions,
    tau_floor,
    tau_floors,
    truth_accuracy,
)
from crnet.evaluate.mocks import Mocks, load_mocks
from crnet.evaluate.tables import (
    DESIGN_ROW,
    MCMC_ROW,
    ORACLE_ROW,
    PAPER_SAMPLED_PARAMETERS,
    PAPER_TABLE3,
    PAPER_TABLE4,
    SIGMA_BANDS,
    accuracy_markdown,
    check_machine_row,
    cluster_intervals,
    finite_tau_columns,
    sigma_bands,
    stationary_chain_shares,
    table3_markdown,
    table4_markdown,
    tau_summary,
)
from crnet.feedback import (
    ClosureResult,
    FeedbackConfig,
    clip_to_box,
    closure_test,
    resimulate,
    resimulated_chi2,
)
from crnet.feedback_inputs import (
    FeedbackInputError,
    StoreSetup,
    check_model_dataset,
    check_resimulation_settings,
    check_test_store,
    read_store_setup,
    sim_from_store,
)
from crnet.feedback_state import load_keyed, savez_keyed
from crnet.json_files import strict_json_text
from crnet.likelihood import CHI2_SCAN_FACTOR, delta_chi2_threshold
from crnet.paths import atomic_write_text, make_output_dir, require_output_dir
from crnet.provenance import array_sha256
from crnet.scan.runner import ScanConfig
from crnet.store import MockStore
from crnet.store_read import merge_differences
from crprop.params import LOG_PARAM_NAMES, PARAM_NAMES

if TYPE_CHECKING:
    from crnet.machines.modelfile import ModelFile

ORACLE_FLOOR_CENTRES = 4
"""Test centres whose floors (21 stencil solves each) are solved in one batch and then saved: a killed
evaluation loses at most one such batch."""

ORACLE_SEED_OFFSET = 7919
"""Added to the feedback seed for the oracle's draws, so they are independent of the pseudo-data noise."""


@dataclass
class EvalConfig:
    """What to evaluate; paths are files. ``feedback`` carries the re-simulation and noise settings."""

    machines: dict[str, str]
    test_store: str
    mock_stores: list[str]
    out: str
    check_model: str | None = None
    feedback: FeedbackConfig = field(default_factory=FeedbackConfig)
    tau_floor: bool = True

    def __post_init__(self) -> None:
        if isinstance(self.feedback, dict):
            self.feedback = FeedbackConfig(**self.feedback)
        if not self.machines:
            raise ValueError("EvalConfig.machines: give at least one machine (name -> model file)")
        if not self.mock_stores:
            raise ValueError("EvalConfig.mock_stores: give the store(s) of the collected mocks")
        unnamed = [n for n in self.machines if not slug(n)]
        if unnamed:  # '' wrote its closure cache into <out>/closure itself and headed its column with nothing
            raise ValueError(f"EvalConfig.machines: names {unnamed} hold no letter or digit; name every machine "
                             "(e.g. 'Machine A')")
        slugs = [slug(n) for n in self.machines]
        if len(set(slugs)) != len(slugs):
            raise ValueError(f"EvalConfig.machines: names {list(self.machines)} share a cache directory "
                             f"({slugs}); give names that differ in letters or digits")


def slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", name).strip("_").lower()


def check_training_rows(model: Any, store_path: str) -> np.ndarray | None:
    """Rows of ``store_path`` the Check Machine ``model`` (a ModelFile) was trained on (its balanced sample's
    training split, rebuilt from the seed and settings in its metadata), or None when it was not trained on
    that store (path or sha256 differ), so that its rates can be scored on records it has not seen."""
    from crnet.machines.data import prepare_check_data
    from crnet.machines.modelfile import file_sha256

    meta = model.metadata or {}
    store, tc = meta.get("training_store") or {}, meta.get("train_config") or {}
    if not store or Path(store.get("path", "")).resolve() != Path(store_path).resolve():
        return None
    if store.get("sha256") != file_sha256(store_path):
        return None
    seed = meta.get("split_seed", tc["seed"])  # a warm-started machine split with its starting model's seed
    data = prepare_check_data(store_path, model.transform, val_fraction=tc["val_fraction"], seed=seed,
                              n_sigma=tc["check_sigma"])
    return np.asarray(data.train_idx)


EVALUATION_CONSEQUENCE = ("Table 4's chi2_tot of the predictions does not compare with the collected mocks' "
                          "(chi2_min comes from them)")
"""Why :func:`check_evaluation_settings` refuses re-simulation settings other than the mocks'."""


def _mock_store_setup(path: str) -> StoreSetup:
    """What the checks read of the mock store ``path`` (one opening); FeedbackInputError 'mock_stores'."""
    return read_store_setup(path, "mock_stores")


def check_evaluation_settings(cfg: EvalConfig) -> tuple[dict[str, ModelFile], ModelFile | None]:
    """Refuse, before anything is predicted, re-simulated or written (FeedbackInputError, one line naming the
    argument and both values), an evaluation whose re-simulations would not repeat the collected mocks'
    simulations: Table 4 counts re-simulated predictions by Delta chi2_tot from chi2_min, the smallest chi2_tot of
    the mocks and of every machine's re-simulations, so both must come from one propagation setup.

    * every ``cfg.mock_stores`` store agrees with the first on what :func:`crnet.store_read.merge_stores` compares
      (:func:`crnet.store_read.merge_differences`: grid with tolerance and step cap, cross sections, solver mode;
      species and energies) - argument 'mock_stores';
    * ``cfg.feedback.sim`` repeats the first store's simulations
      (:func:`crnet.feedback_inputs.check_resimulation_settings`, the feedback loop's rule) - argument the SimConfig
      field ('sim.grid.dz_kpc', 'sim.tol', ...); a store that is no crprop scan is refused
      (:func:`crnet.feedback_inputs.sim_from_store`).

    The data set is the exception in both: :func:`load_mocks` recomputes the chi2 of every store scored against
    another data set than ``cfg.feedback.sim.dataset`` from its fluxes (the paper's updated-data case, Sec. 4.6), so
    the comparison stays like with like. crnet evaluate defaults it to the first store's. Each machine must have
    been trained against it (:func:`crnet.feedback_inputs.check_model_dataset`: its inputs are normalised to it).

    Also refused: a Check Machine among ``cfg.machines`` (argument 'machines'), a ``cfg.check_model`` that is no
    Check Machine ('check_model') and a ``cfg.test_store`` that is no pseudo-data store ('test_store',
    :func:`crnet.feedback_inputs.check_test_store`).

    Returns every machine's model file as loaded for the check (display name -> :class:`crnet.machines.modelfile.
    ModelFile`) and the Check Machine's (None without one): :func:`evaluate` predicts with them instead of reading
    each file again. Each mock store is opened once."""
    first = cfg.mock_stores[0]
    setup = _mock_store_setup(first)
    attrs, species, energies = setup.attrs, setup.species, setup.energies
    for path in cfg.mock_stores[1:]:
        their = _mock_store_setup(path)
        theirs, their_species, their_energies = their.attrs, their.species, their.energies
        diffs = [d for d in merge_differences(theirs, attrs) if d[0] != "dataset"]
        if diffs:
            key, a, b = diffs[0]
            also = f"; also differ: {', '.join(d[0] for d in diffs[1:])}" if len(diffs) > 1 else ""
            raise FeedbackInputError("mock_stores", f"{path}: attribute '{key}' = {a!r} differs from the first mock "
                                     f"store {first} ({b!r}){also}; the collected mocks must come from one "
                                     "propagation setup, or their chi2_tot do not compare")
        if their_species != species or not np.array_equal(their_energies, energies):
            raise FeedbackInputError("mock_stores", f"{path}: species or energy grid differ from the first mock store "
                                     f"{first}")
    from crnet.machines.modelfile import load_model

    models: dict[str, ModelFile] = {}
    for name, path in cfg.machines.items():  # the closure tests predict with the evaluation's data set
        models[name] = load_model(path)
        if models[name].is_check:  # was an AttributeError traceback in the closure test (review by helper-112, s23)
            raise FeedbackInputError("machines", f"{path}: is a Check Machine (machine {name!r}); the closure tests "
                                     "need a regressor (Machine A or B); give a Check Machine as the check model "
                                     "(crnet evaluate --check)")
        try:
            check_model_dataset(path, models[name].metadata, cfg.feedback.sim.dataset)
        except FeedbackInputError as exc:
            raise FeedbackInputError(exc.argument, f"{exc.detail} (machine {name!r})") from None
    check_model = None
    if cfg.check_model:  # checked here, not after every closure test and the floor (review by helper-112, s23)
        check_model = load_model(cfg.check_model)
        if not check_model.is_check:
            raise FeedbackInputError("check_model", f"{cfg.check_model}: is a Machine {check_model.machine} model, "
                                     "not a Check Machine")
    check_test_store(read_store_setup(cfg.test_store, "test_store"))
    try:
        own = sim_from_store(first, setup=setup)
        check_resimulation_settings(replace(cfg.feedback.sim, dataset=own.dataset), first, EVALUATION_CONSEQUENCE,
                                    setup=setup)
    except FeedbackInputError as exc:
        if exc.argument == "train_store":  # the feedback loop's name for the store it reads the settings from
            raise FeedbackInputError("mock_stores", exc.detail) from None
        raise
    return models, check_model


def evaluate(cfg: EvalConfig) -> dict[str, Any]:
    """Run the evaluation (module docstring); writes ``report.md``, ``report.json`` and the PNGs to
    ``cfg.out`` and returns the report dict. Re-simulation settings that do not repeat the mock stores' are
    refused first, before ``cfg.out`` is created (:func:`check_evaluation_settings`). Each model file is read once:
    the closure tests predict with the models the check loaded."""
    require_output_dir(cfg.out, "evaluate: out")  # before the checks load every model
    models, check_model = check_evaluation_settings(cfg)
    out = make_output_dir(cfg.out, "evaluate: out")
    device = "cuda" if _cuda() else "cpu"
    closures: dict[str, ClosureResult] = {}
    for name, path in cfg.machines.items():
        closures[name] = closure_test(path, cfg.test_store, out / "closure" / slug(name), cfg.feedback, device,
                                      model=models.pop(name))  # popped: the closure test's predictor owns it
    mocks = load_mocks(cfg.mock_stores, cfg.feedback.sim.dataset)
    finite = np.concatenate([mocks.chi2] + [c.chi2_resim for c in closures.values()])
    chi2_min = float(np.min(finite[np.isfinite(finite)]))
    table3 = {name: tau_summary(c.tau) for name, c in closures.items()}
    accuracy = {name: truth_accuracy(c.theta, c.truth) for name, c in closures.items() if c.truth is not None}
    floor, floor_error = None, None
    if cfg.tau_floor:
        try:
            floor = _floor(cfg, mocks, out)
        except (RuntimeError, ValueError) as exc:  # the paper's tables do not need it: report why it is missing
            floor_error = f"{type(exc).__name__}: {exc}"
    table4: dict[str, dict[str, float]] = {}
    if (row := mocks.mcmc_row(chi2_min)) is not None:
        table4[MCMC_ROW if mocks.from_chains else DESIGN_ROW] = row
    for name, c in closures.items():
        table4[name] = table4_row(c.chi2_resim, chi2_min, c.truth)
    oracle_error = None
    truth = next((c.truth for c in closures.values() if c.truth is not None), None)
    if cfg.tau_floor and truth is not None:
        try:
            table4[ORACLE_ROW] = table4_row(oracle_chi2(cfg, truth, out), chi2_min, truth)
        except (RuntimeError, ValueError) as exc:
            oracle_error = f"{type(exc).__name__}: {exc}"
    check = None
    if cfg.check_model:
        from crnet.machines.modelfile import Predictor

        predictor = Predictor(check_model, device)
        trained = check_training_rows(predictor.model, cfg.mock_stores[0])
        unseen = np.ones(mocks.chi2.size, dtype=bool)
        if trained is not None:
            unseen[: mocks.first_rows.size] = ~np.isin(mocks.first_rows, trained)
        check = check_machine_row(predictor.classify(mocks.params[unseen]), mocks.chi2[unseen], chi2_min)
        check["sample"] = ("collected mocks outside its training split" if trained is not None else
                           "all collected mocks (its training store is not the first mock store: in-sample rates)")
    figs = {
        "fig5_tau_histograms": str(tau_histograms({n: c.tau for n, c in closures.items()}, out / "fig5_tau.png")),
        "fig6_profile_1d": str(profile_1d(mocks.params, mocks.chi2, chi2_min,
                                          {n: (c.theta, c.chi2_resim) for n, c in closures.items()},
                                          out / "fig6_profile.png",
                                          n_initial=mocks.first_rows.size)),
        "fig7_allowed_2d": str(allowed_2d(mocks.params, mocks.chi2, chi2_min,
                                          {n: c.theta for n, c in closures.items()}, out / "fig7_allowed.png")),
    }
    stop = {n: c.passing_share(cfg.feedback.tau_threshold) for n, c in closures.items()}
    counts = {n: closure_counts(c) for n, c in closures.items()}
    report = {"chi2_min": chi2_min, "n_mocks": int(mocks.chi2.size), "table3_percent": table3,
              "scan_temperature": mocks.temperature if np.isfinite(mocks.temperature) else None,
              "closure_counts": counts,
              "tau_floor": None if floor is None else floor.as_dict(), "tau_floor_error": floor_error,
              "oracle_error": oracle_error,
              "accuracy_vs_truth_percent": accuracy,
              "table4_fractions": table4, "check_machine": check, "feedback_passing_share": stop,
              "paper": {"table3_percent": PAPER_TABLE3, "table4_percent": PAPER_TABLE4},
              "figures": figs, "config": asdict(cfg)}
    atomic_write_text(out / "report.json", strict_json_text(report))
    atomic_write_text(out / "report.md", render_markdown(report))
    return report


def render_markdown(report: dict[str, Any]) -> str:
    lines = ["# crnet evaluation", "",
             f"chi^2_tot minimum over {report['n_mocks']} collected mocks and the re-simulations: "
             f"{report['chi2_min']:.2f} (paper: 347.0 on its full data).", "",
             "## Table 3 - tau = (theta' - theta) / |theta|, median and 68 % interval, in %", "",
             table3_markdown(report["table3_percent"], (report.get("tau_floor") or {}).get("tau_percent")), ""]
    floor = report.get("tau_floor")
    lines += _explained("Unbiased floor", floor and (
        "Unbiased floor: the smallest 68 % half-width of tau a linear unbiased machine can reach at the best "
        f"collected mock under the {100 * floor['max_relative']:.0f} % pseudo-experiment noise (linearised "
        f"Gauss-Markov bound from the Jacobian of the {floor['n_data']} log fluxes; crnet.evaluate.floor). A much "
        "narrower interval suggests the machine leans on its training distribution; see the accuracy table."),
        report.get("tau_floor_error"))
    acc = report.get("accuracy_vs_truth_percent")
    if acc:
        first = next(iter(next(iter(acc.values())).values()))
        lines += ["## Prediction against the truth - (theta - theta_true) / |theta_true|, median and 68 % interval, "
                  "in % (slope of theta on theta_true)", "",
                  f"{first['n']} test pseudo-spectra from {first['n_distinct_truths']} distinct central spectra"
                  + (f" (a slope needs at least {MIN_DISTINCT_TRUTHS_FOR_SLOPE})."
                     if first["n_distinct_truths"] < MIN_DISTINCT_TRUTHS_FOR_SLOPE else "."), "",
                  accuracy_markdown(acc), ""]
    lines += ["## Table 4 - share of re-simulated predictions after chi2_scan -> chi2_tot", "",
              table4_markdown(report["table4_fractions"]), "", conventions_text(report), ""]
    lines += _explained(ORACLE_ROW, ORACLE_ROW in report["table4_fractions"] and (
        f"{ORACLE_ROW}: the test truths moved by draws from the unbiased floor's covariance at their centre and "
        "re-simulated - what a machine at the floor would score on these centres (no spread along unconstrained "
        "directions). A machine well above it leans on its training distribution."), report.get("oracle_error"))
    chk = report.get("check_machine")
    if chk:
        def rate(key: str, n: int, side: str) -> str:
            return f"{100 * chk[key]:.1f} %" if n else f"undefined (no mock {side} 4 sigma)"

        lines += [f"Check Machine: true-positive rate {rate('true_positive_rate', chk['n_inside'], 'inside')} "
                  f"(paper 29 %), true-negative rate {rate('true_negative_rate', chk['n_outside'], 'outside')} "
                  "(paper 93 %) on "
                  f"{chk['n_inside']} / {chk['n_outside']} mocks inside / outside 4 sigma "
                  f"({chk.get('sample', 'all collected mocks')}).", ""]
    threshold = ((report.get("config") or {}).get("feedback") or {}).get("tau_threshold", 0.1)
    lines += [f"## Feedback stop rule (share with mean |tau| < {threshold:g})", ""]
    lines += [f"- {n}: {100 * v:.1f} %" for n, v in report["feedback_passing_share"].items()]
    lines += ["", "## Figures", ""] + [f"- {k}: `{Path(v).name}`" for k, v in report["figures"].items()]
    return "\n".join(lines) + "\n"


def closure_counts(c: ClosureResult) -> dict[str, Any]:
    """How a machine's test predictions were counted: all of them, outside the prior box (re-simulated clipped
    into it; tau against the machine's own theta), not simulable (Table 4: > 6 sigma), simulated without a finite
    converged chi^2 (> 6 sigma); per parameter, those with a finite tau of that parameter (Table 3's
    denominators, :func:`crnet.evaluate.tables.finite_tau_columns`) with their smallest and largest count; and
    those with all ten tau finite (the only ones the feedback stop rule can pass, see
    :func:`crnet.evaluate.tables.tau_summary`). ``n_skipped_inputs``: test inputs the machine could not read
    (unusable spectra), which gave no prediction and are in neither table's denominator
    (:class:`crnet.feedback.ClosureResult`)."""
    finite_chi2 = np.isfinite(c.chi2_resim)
    per_param = {name: int(col.size) for name, col in zip(LOG_PARAM_NAMES, finite_tau_columns(c.tau), strict=True)}
    return {"n_predictions": int(c.theta.shape[0]), "n_skipped_inputs": int(c.n_skipped_inputs),
            "n_outside_box": c.n_outside_box,
            "n_not_simulable": int(np.count_nonzero(~c.simulated)),
            "n_no_finite_chi2": int(np.count_nonzero(c.simulated & ~finite_chi2)),
            "n_finite_tau_by_parameter": per_param, "n_finite_tau_min": min(per_param.values()),
            "n_finite_tau_max": max(per_param.values()),
            "n_all_tau_finite": int(np.count_nonzero(np.all(np.isfinite(c.tau), axis=1)))}


def default_scan_temperature() -> float:
    """The scan's default T (:class:`crnet.scan.runner.ScanConfig`), for reports that do not record theirs."""
    return float(next(f.default for f in fields(ScanConfig) if f.name == "temperature"))


def stationary_chain_text(temperature: float | None) -> str:
    """The shares a stationary chain is expected to put in Table 4's bands for crnet's sampled dimension and the
    paper's (:func:`crnet.evaluate.tables.stationary_chain_shares`), at the scan's temperature."""
    known = temperature is not None and np.isfinite(temperature) and temperature > 0
    t = float(temperature) if known else default_scan_temperature()
    ours = stationary_chain_shares(t, len(PARAM_NAMES))
    paper = stationary_chain_shares(t, PAPER_SAMPLED_PARAMETERS)
    where = (f"the scan's T = {t:g}" if known else
             f"T = {t:g}, the scan's default (the report does not record the scan's temperature),")
    pa = PAPER_TABLE4[MCMC_ROW]
    return (f"A stationary chain at {where} has Delta chi2_tot / T ~ chi2(d) for d sampled parameters and is "
            f"expected to put {100 * ours['le_4sigma']:.2f} % within 4 sigma and {100 * ours['4_to_6sigma']:.2f} % "
            f"at 4-6 sigma for crnet's d = {len(PARAM_NAMES)} (the normalisations profiled inside chi2), and "
            f"{100 * paper['le_4sigma']:.2f} % / {100 * paper['4_to_6sigma']:.2f} % for the paper's "
            f"d = {PAPER_SAMPLED_PARAMETERS} (its scan sampled them all; it reports {pa[0]:.2f} % / {pa[1]:.2f} %): "
            "the difference of the MCMC row from the paper's comes mostly from the sampled dimension"
            + ("." if t == CHI2_SCAN_FACTOR else f" and from T (the paper's is {CHI2_SCAN_FACTOR:g}, Eq. 4.1)."))


def conventions_text(report: dict[str, Any]) -> str:
    """The counting rules of Tables 3 and 4, with each machine's counts (:func:`closure_counts`) and, with an
    MCMC row, the shares a stationary chain is expected to reach (:func:`stationary_chain_text`)."""
    t4, t6 = (delta_chi2_threshold(s) for s in SIGMA_BANDS)
    text = (f"Delta chi2_tot is measured from the minimum above; 4 sigma is Delta chi2 <= {t4:.2f} and 6 sigma "
            f"<= {t6:.2f} (14 dof, as the paper; it prints 69.91). Predictions outside the prior box are "
            "re-simulated clipped into it; predictions that cannot be simulated, or whose re-simulation has no "
            "finite converged chi2, count as > 6 sigma, and so do the scan's records (chain states, design points) "
            "without a converged solve in its own row; tau_i = (theta'_i - theta_i) / |theta_i| (Eq. 4.4 with "
            "|theta_i|, so that its sign is the shift's also for eta < 0; the same as the paper's wherever "
            "theta_i > 0; the paper's eta column is as printed, and with its eta < 0, as in crml_base's -1.55, "
            "its sign and its + and - sides are mirrored against crnet's); Table 3 uses, per parameter, the "
            "predictions whose tau of that parameter is finite (tau_i is not finite where theta_i = 0, e.g. "
            "eta = 0, or where theta' is missing), while the feedback stop rule needs all ten. Test inputs a "
            "machine cannot read (unusable spectra) give no prediction and are left out of both tables (the "
            "paper's shares are of the predictions); their number is given per machine.")
    rows = [name for name in report["table4_fractions"] if name in (MCMC_ROW, DESIGN_ROW)]
    if rows == [MCMC_ROW]:
        text += (f" {MCMC_ROW}: the scan's records weighted by chain multiplicity (the steps each chain stayed in "
                 "a state; no burn-in removed, the chains start from the fit when there is one). "
                 + stationary_chain_text(report.get("scan_temperature")))
    for name, k in (report.get("closure_counts") or {}).items():
        lo, hi = k["n_finite_tau_min"], k["n_finite_tau_max"]
        finite = f"{lo}" if lo == hi else f"{lo}-{hi} (by parameter)"
        skipped = ("" if "n_skipped_inputs" not in k else  # reports written before it was counted
                   f" ({k['n_skipped_inputs']} test inputs unusable, left out)")
        text += (f" {name}: {k['n_predictions']} predictions{skipped}, {k['n_outside_box']} outside the box, "
                 f"{k['n_not_simulable']} not simulable, {k['n_no_finite_chi2']} without a finite chi2, "
                 f"{finite} with a finite tau, {k['n_all_tau_finite']} with all ten finite.")
    return text


def table4_row(chi2_tot: np.ndarray, chi2_min: float, truth: np.ndarray | None = None) -> dict[str, float]:
    """Table 4 shares of re-simulated predictions, with 68 % cluster-bootstrap intervals when the test truths
    (n, 10) are known: predictions of one central spectrum are not independent."""
    row = sigma_bands(chi2_tot, chi2_min)
    if truth is not None:
        row.update(cluster_intervals(chi2_tot, chi2_min, centre_labels(truth)))
    return row


def _explained(what: str, text: str | None, error: str | None) -> list[str]:
    """Report lines: ``text`` when the item was computed, else why it was not (``error``), else nothing."""
    if text:
        return [text, ""]
    return [f"{what} not computed: {error}", ""] if error else []


def _floor(cfg: EvalConfig, mocks: Mocks, out: Path) -> TauFloor:
    """The unbiased tau floor at the collected mock of smallest chi^2_tot; cached in ``out/tau_floor.json``."""
    best = mocks.params[int(np.argmin(np.where(np.isfinite(mocks.chi2), mocks.chi2, np.inf)))]
    cache = out / "tau_floor.json"
    sim = cfg.feedback.sim
    key = {"params": [float(v) for v in best], "max_relative": cfg.feedback.max_relative, "grid": sim.grid.settings(),
           "solver": [sim.mode, sim.tol, sim.dataset]}
    if cache.is_file():
        saved = json.loads(cache.read_text())
        if saved.get("key") == key:
            return TauFloor(np.array(saved["x_log"]), np.array(saved["sigma_log"]),
                            np.array(saved["covariance_log"]), float(saved["max_relative"]), int(saved["n_data"]))
    fl = tau_floor(sim.model(), best, cfg.feedback.max_relative)
    atomic_write_text(cache, json.dumps({"key": key, "x_log": fl.x_log.tolist(), "sigma_log": fl.sigma_log.tolist(),
                               "covariance_log": fl.covariance_log.tolist(), "max_relative": fl.max_relative,
                               "n_data": fl.n_data}, indent=1))
    return fl


def oracle_chi2(cfg: EvalConfig, truth: np.ndarray, out: Path) -> np.ndarray:
    """(n,) chi^2_tot of the re-simulated :func:`oracle_predictions` around the test truths (draws outside the
    prior box are clipped into it, as a machine's predictions; inf where a draw is not finite or its re-simulation
    did not converge), each drawn with the floor at its own centre (21 solves per distinct
    truth). Resumable: the floors are computed ORACLE_FLOOR_CENTRES centres per batch and saved
    (``out/oracle_floors.npz``), the draws are saved before their re-simulation (``out/oracle_draws.npz``), which
    resumes ``out/oracle_resim.h5``; the result is cached in ``out/oracle.npz``. All are keyed on the truths,
    seed, noise and solver settings; files of another key are recomputed. Not part of the chi^2_tot minimum:
    the oracle is a reference, not a prediction."""
    cache, draws, floors_file = out / "oracle.npz", out / "oracle_draws.npz", out / "oracle_floors.npz"
    resim_path = out / "oracle_resim.h5"
    seed = cfg.feedback.seed + ORACLE_SEED_OFFSET
    sim = cfg.feedback.sim
    key = json.dumps({"truth_sha": array_sha256(truth), "seed": seed, "max_relative": cfg.feedback.max_relative,
                      "sim": [sim.grid.settings(), sim.mode, sim.tol, sim.dataset]}, sort_keys=True)
    if (cached := load_keyed(cache, key)) is not None and "chi2" in cached:
        return cached["chi2"]
    if (drawn := load_keyed(draws, key)) is not None and "theta" in drawn:
        theta = drawn["theta"]
    else:
        resim_path.unlink(missing_ok=True)  # re-simulations of other draws
        centres, labels = np.unique(np.asarray(truth, dtype=np.float64), axis=0, return_inverse=True)
        cov = np.zeros((centres.shape[0], 10, 10))
        done = 0
        if (floors := load_keyed(floors_file, key)) is not None and {"done", "covariance_log"} <= floors.keys():
            done = int(floors["done"])
            cov[:done] = floors["covariance_log"][:done]
        model = sim.model()
        for start in range(done, centres.shape[0], ORACLE_FLOOR_CENTRES):
            stop = min(start + ORACLE_FLOOR_CENTRES, centres.shape[0])
            cov[start:stop] = [f.covariance_log for f in tau_floors(model, centres[start:stop],
                                                                    cfg.feedback.max_relative)]
            savez_keyed(floors_file, key, covariance_log=cov, done=np.array(stop))
        theta = oracle_predictions(truth, cov[labels.reshape(-1)], np.random.default_rng(seed))
        savez_keyed(draws, key, theta=theta)
    clipped, ok = clip_to_box(theta)
    chi2 = np.full(theta.shape[0], np.inf)
    if ok.any():
        resimulate(clipped[ok], resim_path, sim, cfg.feedback.progress)
        with MockStore.open(resim_path, "r") as st:
            chi2 = resimulated_chi2(st, ok)[0]
    savez_keyed(cache, key, chi2=chi2, theta=theta)
    return chi2


def _cuda() -> bool:
    import torch

    return bool(torch.cuda.is_available())
