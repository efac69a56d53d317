"""crnet evaluate re-simulates with its mocks' settings: defaults from the first --mocks store, options and the
library's SimConfig checked against it before any prediction, several --mocks stores checked against each other;
Table 4's counts name the test inputs a machine could not read (tiny grid, tol 1e-4, numba)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from helpers_loop import GRID, OPTIONS_AGAINST_THE_STORE, TOL, build_loop_world
from helpers_store import write_synthetic_store
from typer.testing import CliRunner

import crnet.closure as closure_mod
import crnet.evaluate.report as report_mod
import crnet.machines.inference as inference
from crnet.cli import app
from crnet.evaluate.report import EvalConfig, check_evaluation_settings, closure_counts, conventions_text, evaluate
from crnet.features import species_rows
from crnet.feedback import FeedbackConfig, SimConfig, closure_key, closure_test
from crnet.feedback_inputs import FeedbackInputError
from crnet.feedback_state import load_keyed, savez_keyed
from crnet.machines.training import TrainConfig, train
from crnet.store import MockStore

torch.set_num_threads(1)
runner = CliRunner()


class WorkStarted(AssertionError):
    """Raised by the stand-ins for predicting and re-simulating."""


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, Path]:
    """A tiny-grid scan at tol 1e-4 (8 models), 3 test pseudo-spectra of it, Machine A trained on it."""
    return build_loop_world(tmp_path_factory.mktemp("eval_world"))


@pytest.fixture
def no_work(monkeypatch) -> None:
    """Predicting and re-simulating raise: a refusal must come before both."""
    def refuse(*args, **kw):
        raise WorkStarted("work started before the settings were checked")

    for module, name in ((inference, "predict_file"), (closure_mod, "resimulate"), (report_mod, "closure_test"),
                         (report_mod, "resimulate"), (report_mod, "tau_floor")):
        monkeypatch.setattr(module, name, refuse)


def _copy_with(src: Path, dst: Path, **attrs) -> Path:
    """A copy of the store ``src`` with root attributes replaced (``grid`` a dict, merged into the store's)."""
    shutil.copy(src, dst)
    with h5py.File(dst, "r+") as f:
        for key, value in attrs.items():
            if key == "grid":
                value = json.dumps({**json.loads(f.attrs["grid"]), **value}, sort_keys=True)
            f.attrs[key] = value
    return dst


def _cli(world: dict[str, Path], out: Path, *extra: str, mocks: tuple[Path, ...] = ()):
    stores = [a for p in (mocks or (world["scan"],)) for a in ("--mocks", str(p))]
    return runner.invoke(app, ["evaluate", "--machine", f"Machine A={world['a']}", "--test", str(world["test"]),
                               *stores, "--out", str(out), "--backend", "numba", "--no-progress", *extra])


def _usage_error(res, fragment: str) -> None:
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit) and "Traceback" not in res.output
    assert fragment in res.output, res.output
    assert res.output.count("error:") == 1 and res.output.strip().count("\n") == 0, res.output


def _cfg(world: dict[str, Path], out: Path, sim: SimConfig, mocks: list[Path] | None = None) -> EvalConfig:
    return EvalConfig({"Machine A": str(world["a"])}, str(world["test"]), [str(p) for p in mocks or [world["scan"]]],
                      str(out), feedback=FeedbackConfig(sim=sim, n_test=1, progress=False))


def _sim(**kw) -> SimConfig:
    return SimConfig(**{"grid": GRID, "tol": TOL, "backend": "numba", **kw})


# ---------------------------------------------------------------------------------------------- command line
def test_cli_evaluates_with_the_scans_own_settings(world, tmp_path):
    """Before: no options meant the paper grid at tol 1e-6, so Table 4's chi2 of the predictions was not the
    mocks' chi2. Now a tol-1e-4 tiny-grid scan is re-simulated on its own grid and tolerance without options."""
    out = tmp_path / "ev"
    res = _cli(world, out, "--n-test", "1")
    assert res.exit_code == 0, res.output
    assert "Table 4" in res.output and "1 predictions (0 test inputs unusable, left out)" in res.output
    with MockStore.open(out / "closure" / "machine_a" / "resim.h5") as st, MockStore.open(world["scan"]) as scan:
        assert st.attrs()["grid"] == scan.attrs()["grid"] and st.attrs()["grid"]["tol"] == TOL
        assert st.attrs()["dataset"] == scan.attrs()["dataset"] == "paper"
    report = json.loads((out / "report.json").read_text())
    sim = report["config"]["feedback"]["sim"]
    assert (sim["tol"], sim["grid"]["dz_kpc"], sim["grid"]["dr_kpc"], sim["mode"]) == (TOL, 1.3, 4.0, "fast")
    assert report["closure_counts"]["Machine A"]["n_skipped_inputs"] == 0


@pytest.mark.parametrize(("options", "message"), OPTIONS_AGAINST_THE_STORE)
def test_cli_refuses_an_option_that_disagrees_with_the_mocks(world, tmp_path, no_work, options, message):
    res = _cli(world, tmp_path / "ev", *options)
    _usage_error(res, f"error: {message} ({world['scan']} records ")
    assert "or Table 4's chi2_tot of the predictions does not compare with the collected mocks'" in res.output
    assert not (tmp_path / "ev").exists()  # nothing predicted, nothing written


def test_cli_accepts_options_that_agree_and_another_data_set(world, tmp_path, monkeypatch):
    import crnet.evaluate as evaluate_pkg

    seen: list[EvalConfig] = []

    def capture(cfg: EvalConfig) -> dict:
        check_evaluation_settings(cfg)
        seen.append(cfg)
        Path(cfg.out).mkdir()
        (Path(cfg.out) / "report.md").write_text("report\n")
        return {}

    monkeypatch.setattr(evaluate_pkg, "evaluate", capture)
    res = _cli(world, tmp_path / "ev", "--dz", "1.3", "--tol", "1e-4", "--mode", "fast", "--max-steps", "600")
    assert res.exit_code == 0, res.output
    sim = seen[0].feedback.sim
    assert sim.grid.settings() == GRID.settings() and (sim.tol, sim.dataset, sim.backend) == (TOL, "paper", "numba")
    # the data set may differ from the mocks' (load_mocks recomputes their chi2 against it), not from the machine's:
    # its inputs are normalised (q_C) to the data set it was trained against (review by helper-58: this was found
    # only by predict_file, after the check had passed)
    res = _cli(world, tmp_path / "ev2", "--dataset", "ams02-2021")
    _usage_error(res, "error: --dataset 'ams02-2021': ")
    assert "a.pt's inputs were normalised (q_C) against 'paper'" in res.output and "(machine 'Machine A')" in res.output
    assert len(seen) == 1 and not (tmp_path / "ev2").exists()
    ams = _copy_with(world["scan"], tmp_path / "scan_ams.h5", dataset="ams02-2021")
    train(ams, tmp_path / "a_ams.pt", TrainConfig(machine="A", epochs=1, batch_size=4, progress=False, threads=1))
    res = runner.invoke(app, ["evaluate", "--machine", f"Machine A={tmp_path / 'a_ams.pt'}", "--test",
                              str(world["test"]), "--mocks", str(world["scan"]), "--out", str(tmp_path / "ev3"),
                              "--backend", "numba", "--no-progress", "--dataset", "ams02-2021"])
    assert res.exit_code == 0, res.output
    assert seen[1].feedback.sim.dataset == "ams02-2021" and seen[1].feedback.sim.tol == TOL


def test_cli_refuses_mock_stores_of_another_setup(world, tmp_path, no_work):
    other = _copy_with(world["scan"], tmp_path / "other.h5", grid={"tol": 1e-6})
    res = _cli(world, tmp_path / "ev", mocks=(world["scan"], other))
    _usage_error(res, f"error: --mocks {other}: attribute 'grid.tol' = 1e-06 differs from the first mock store "
                      f"{world['scan']} (0.0001); the collected mocks must come from one propagation setup")
    assert not (tmp_path / "ev").exists()


def test_cli_names_mocks_for_a_store_of_no_crprop_scan(world, tmp_path, no_work):
    write_synthetic_store(tmp_path / "syn.h5", 4)
    res = _cli(world, tmp_path / "ev", mocks=(tmp_path / "syn.h5",))
    _usage_error(res, f"error: --mocks {tmp_path / 'syn.h5'}: its attribute 'grid' = ")


# ---------------------------------------------------------------------------------------------- library
def test_library_refuses_the_paper_grid_for_a_tiny_grid_scan(world, tmp_path, no_work):
    """crnet.evaluate.evaluate, as crnet pipeline calls it, checks its SimConfig against the first mock store."""
    with pytest.raises(FeedbackInputError) as err:
        evaluate(_cfg(world, tmp_path / "ev", SimConfig(tol=TOL, backend="numba")))
    assert err.value.argument == "sim.grid.dr_kpc"
    assert str(err.value).startswith(f"sim.grid.dr_kpc 1.0 differs from the store's 4.0 ({world['scan']} records "
                                     "grid.dr_kpc = 4.0; also differ: grid.dz_kpc, grid.ekin_factor")
    assert "\n" not in str(err.value) and not (tmp_path / "ev").exists()
    with pytest.raises(FeedbackInputError, match=r"^sim\.tol 1e-06 differs from the store's 0\.0001"):
        evaluate(_cfg(world, tmp_path / "ev", _sim(tol=None)))
    assert not (tmp_path / "ev").exists()


def test_library_checks_every_mock_store_and_each_machines_data_set(world, tmp_path):
    rescored = _copy_with(world["scan"], tmp_path / "rescored.h5", dataset="ams02-2021")
    check_evaluation_settings(_cfg(world, tmp_path / "ev", _sim(), [world["scan"], rescored]))
    with pytest.raises(FeedbackInputError, match=r"^sim\.dataset 'ams02-2021': .*a\.pt's inputs were normalised "
                       r"\(q_C\) "
                       r"against 'paper'.*\(machine 'Machine A'\)$") as err:
        check_evaluation_settings(_cfg(world, tmp_path / "ev", _sim(dataset="ams02-2021")))  # the machine's, not
    assert err.value.argument == "sim.dataset"  # the mocks': their chi2 is recomputed, its inputs are not
    stretched = _copy_with(world["scan"], tmp_path / "stretched.h5", grid={"dz_kpc": 1.0, "ekin_factor": 2.0})
    with pytest.raises(FeedbackInputError, match=r"stretched\.h5: attribute 'grid\.dz_kpc' = 1\.0 differs from the "
                       r"first mock store .*scan\.h5 \(1\.3\); also differ: grid\.ekin_factor;") as err:
        check_evaluation_settings(_cfg(world, tmp_path / "ev", _sim(), [world["scan"], rescored, stretched]))
    assert err.value.argument == "mock_stores"
    with pytest.raises(FeedbackInputError, match=r"^mock_stores .*missing\.h5"):
        check_evaluation_settings(_cfg(world, tmp_path / "ev", _sim(), [tmp_path / "missing.h5"]))


# ---------------------------------------------------------------------------------------------- skipped inputs
def _with_unusable_record(world: dict[str, Path], dst: Path, row: int) -> Path:
    """A copy of the test pseudo-data whose record ``row`` has a zero boron spectrum (no usable features)."""
    shutil.copy(world["test"], dst)
    with MockStore.open(dst) as st:
        b = species_rows(st.species, ["B"])[0]  # the feature's row
    with h5py.File(dst, "r+") as f:
        flux = f["flux"][row]
        flux[b] = 0.0
        f["flux"][row] = flux
    return dst


def test_an_unusable_test_input_is_counted_and_left_out(world, tmp_path, monkeypatch):
    bad = _with_unusable_record(world, tmp_path / "bad.h5", 0)
    cfg = FeedbackConfig(sim=_sim(), progress=False)
    res = closure_test(world["a"], bad, tmp_path / "c", cfg)
    assert res.n_skipped_inputs == 1 and res.theta.shape == (2, 10)
    counts = closure_counts(res)
    assert counts["n_skipped_inputs"] == 1 and counts["n_predictions"] == 2
    text = conventions_text({"table4_fractions": {}, "closure_counts": {"Machine A": counts}})
    assert f" Machine A: 2 predictions (1 test inputs unusable, left out), {counts['n_outside_box']} outside" in text
    assert "left out of both tables" in text
    # the count is cached with the result
    resims: list[int] = []
    monkeypatch.setattr(closure_mod, "resimulate", lambda *a, **k: resims.append(1))
    assert closure_test(world["a"], bad, tmp_path / "c", cfg).n_skipped_inputs == 1 and resims == []
    monkeypatch.undo()
    # with --n-test: the unusable inputs before the last prediction kept (record 0 is before record 1's prediction)
    assert closure_test(world["a"], bad, tmp_path / "n1", FeedbackConfig(sim=_sim(), n_test=1, progress=False),
                        ).n_skipped_inputs == 1
    last = _with_unusable_record(world, tmp_path / "bad_last.h5", 2)
    assert closure_test(world["a"], last, tmp_path / "n1_last", FeedbackConfig(sim=_sim(), n_test=1,
                                                                                 progress=False)).n_skipped_inputs == 0


def test_caches_without_the_count_are_recomputed_without_re_simulating(world, tmp_path, monkeypatch):
    """closure.npz written before n_skipped_inputs was saved is stale (CLOSURE_ARRAYS); prediction.npz of that time
    is used, the count taken again from a new prediction, and resim.h5 is kept."""
    bad = _with_unusable_record(world, tmp_path / "bad.h5", 1)
    cfg = FeedbackConfig(sim=_sim(), progress=False)
    work = tmp_path / "c"
    first = closure_test(world["a"], bad, work, cfg)
    key = closure_key(world["a"], bad, cfg)
    for name, drop in (("closure.npz", "n_skipped_inputs"), ("prediction.npz", "n_skipped")):
        arrays = load_keyed(work / name, key)
        assert drop in arrays
        savez_keyed(work / name, key, **{k: v for k, v in arrays.items() if k != drop})
    resims: list[int] = []
    monkeypatch.setattr(closure_mod, "resimulate", lambda *a, **k: resims.append(1) or work / "resim.h5")
    again = closure_test(world["a"], bad, work, cfg)
    assert resims == [1]  # resumed from the complete resim.h5: resimulate returns at once there
    assert again.n_skipped_inputs == 1 and np.array_equal(again.chi2_resim, first.chi2_resim)
    assert int(load_keyed(work / "closure.npz", key)["n_skipped_inputs"]) == 1


def test_an_existing_file_as_out_is_refused_in_one_line(world, tmp_path):
    """--out naming an existing file (here the mock store itself) ended in a FileExistsError traceback (walk-through,
    helper-70); now one line, before any model is loaded, and the file is untouched. crnet feedback and crnet
    pipeline lock their --out through run_lock, which refuses it the same way."""
    from crnet.run_lock import run_lock

    before = world["scan"].read_bytes()
    _usage_error(_cli(world, world["scan"]), f"error: evaluate: out {world['scan']}: an existing file, not a "
                                             "directory; give a new or existing directory")
    assert world["scan"].read_bytes() == before
    with pytest.raises(ValueError, match=r"^crnet feedback: output directory .*scan\.h5: an existing file, not a "
                                         r"directory"):
        with run_lock(world["scan"], "crnet feedback"):
            pytest.fail("locked a file")
    assert world["scan"].read_bytes() == before


def test_machine_names_given_twice_or_empty_are_refused(world, tmp_path):
    """`--machine A=a.pt --machine A=b.pt` evaluated only b.pt and `--machine =a.pt` wrote its closure cache into
    <out>/closure itself under an empty column (walk-through, session 19)."""
    twice = _cli(world, tmp_path / "e1", "--machine", f"Machine A={world['a']}")
    _usage_error(twice, "--machine: the name 'Machine A' is given twice")
    _usage_error(_cli(world, tmp_path / "e2", "--machine", f"={world['a']}"),
                 "--machine expects NAME=MODEL_FILE with a name and a file")
    with pytest.raises(ValueError, match=r"names \['--'\] hold no letter or digit"):
        EvalConfig({"--": str(world["a"])}, str(world["test"]), [str(world["scan"])], str(tmp_path / "e3"))
