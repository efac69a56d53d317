"""What a new user's walk through the README found in the command line (helper-70, session 18): help text that lost
its TOML syntax to Rich markup, and `crnet galprop compare` refusals that were tracebacks or the wrong message."""

from __future__ import annotations

import shutil
from pathlib import Path

from typer.testing import CliRunner

from crnet.cli import app
from crprop.galaxy import paper_galdef_path

runner = CliRunner()


def test_simulate_help_keeps_the_toml_table_names():
    res = runner.invoke(app, ["simulate", "--help"], env={"COLUMNS": "200"})
    assert res.exit_code == 0
    assert "a list of [[model]] tables" in res.output and "an optional [galdef] table" in res.output


def test_galprop_compare_refuses_a_mistyped_mode_or_backend_in_one_line(galprop_ref_dir):
    """GALPROP's crml_base run is read, then the solve refuses the option: one line, exit 2 (was a traceback)."""
    run = galprop_ref_dir / "crml_base"
    for option, value, message in (("--mode", "fats", "error: mode must be one of ('fast', 'galprop', 'exact'), "
                                                      "got 'fats'"),
                                   ("--backend", "nmba", "error: backend must be one of ('auto', 'numpy', 'numba', "
                                                         "'cupy'), got 'nmba'")):
        res = runner.invoke(app, ["galprop", "compare", str(run), option, value])
        assert res.exit_code == 2 and "Traceback" not in res.output, res.output
        assert res.output.strip() == message


def test_galprop_compare_says_a_directory_without_output_has_none(tmp_path):
    shutil.copy(paper_galdef_path(), tmp_path / Path(paper_galdef_path()).name)
    res = runner.invoke(app, ["galprop", "compare", str(tmp_path)])
    assert res.exit_code == 2, res.output
    assert res.output.strip() == (f"error: {tmp_path}: no GALPROP output ({tmp_path.name}.npz or nuclei_full_54_* / "
                                  "nuclei_54_* FITS)")


def test_crnet_fit_has_no_temperature_that_changes_nothing():
    """The fit's result does not depend on T (the scan tempers the covariance when it starts, with its own T): the
    option that was validated and then unused is gone, and the scan's T alone sets the start dispersion."""
    import dataclasses

    import numpy as np

    from crnet.scan.fit import FitConfig, tempered_covariance

    assert "temperature" not in {f.name for f in dataclasses.fields(FitConfig)}
    res = runner.invoke(app, ["fit", "--out", "unused.json", "--temperature", "5"])
    assert res.exit_code == 2 and "No such option: --temperature" in res.output
    cov = np.diag(np.linspace(1e-5, 1e-4, 10))  # the fit's untempered covariance (log10 / linear parameters)
    np.testing.assert_allclose(tempered_covariance(cov, 20.0), 2 * tempered_covariance(cov, 10.0), rtol=1e-12)


def test_a_design_scan_without_points_names_the_option(tmp_path):
    res = runner.invoke(app, ["scan", "--out", str(tmp_path / "s.h5"), "--design", "sobol"])
    assert res.exit_code == 2 and res.output.strip() == "error: --design sobol needs --points N > 0 (the design's size)"
    assert not (tmp_path / "s.h5").exists()


def test_a_profiled_ratio_on_its_bound_is_flagged():
    """crnet chi2 marked a phi on a bound but not a normalisation ratio stuck at --norm-lo/--norm-hi: the record now
    names it (``ratios_at_bound``) and the table marks it with '*', as for phi."""
    import numpy as np

    from crnet.likelihood.result import Chi2Result

    box = (0.8, 1.2)
    ratios = {"xi_Li": np.array([0.8, 1.0]), "xi_Be": np.array([1.0, 1.2]), "qO_over_qC": np.array([1.0, np.nan])}
    res = Chi2Result("paper", 10, np.array([1.0, 2.0]), np.array([1.0, 1.0]), ratios, np.zeros((2, 1)), ["B"],
                     bounds=dict.fromkeys(ratios, box))
    first, second = res.to_records()
    assert first["ratios_at_bound"] == ["xi_Li"] and second["ratios_at_bound"] == ["xi_Be"]
    res.ratios["xi_Li"][0] = 0.8 * (1 + 1e-6)  # a free minimum near, not on, the bound
    assert "ratios_at_bound" not in res.to_records()[0]
    res.bounds = dict.fromkeys(ratios, (1.0, 1.0))  # --norm-lo = --norm-hi: the ratios are fixed, not profiled
    res.ratios = {name: np.ones(2) for name in ratios}
    assert all("ratios_at_bound" not in rec for rec in res.to_records())


def test_a_fit_of_another_grid_or_data_set_is_refused_but_not_of_another_mode():
    """`crnet fit` has no --mode (it records 'fast'): a scan in another converged mode on the same grid may start from
    it (review, helper-73); another grid or data set may not."""
    import numpy as np
    import pytest

    from crnet.scan.fit import FitResult
    from crprop.params import CRML_BASE, PARAM_NAMES

    fit = FitResult(params=dict(zip(PARAM_NAMES, CRML_BASE.as_vector(), strict=True)), x_log=[0.0] * 10, chi2=1.0,
                    norms=[1.0] * 4, covariance_log=np.eye(10).tolist(), success=True, status=1, message="",
                    n_evaluations=1, n_models=1, wall_s=0.0,
                    setup={"grid": {"dr_kpc": 4.0}, "dataset": "paper", "mode": "fast"})
    fit.check_setup({"dr_kpc": 4.0}, "paper")
    with pytest.raises(ValueError, match=r"^--from-fit: the fit was made with another grid than this scan \(grid: "
                                         r"fit \{'dr_kpc': 4.0\}, scan \{'dr_kpc': 2.0\}\)"):
        fit.check_setup({"dr_kpc": 2.0}, "paper")
    with pytest.raises(ValueError, match="another dataset than this scan"):
        fit.check_setup({"dr_kpc": 4.0}, "ams02-2021")


def test_explicit_paper_grid_values_are_the_default():
    """`--dr 1 --loss-scheme upwind1` (the paper galdef's values) is the default setup: one spelling in settings(),
    cache keys and the --from-fit check, also against a fit file that recorded the explicit values."""
    import numpy as np
    import pytest

    from crnet.scan import GridConfig
    from crnet.scan.fit import FitResult

    assert GridConfig(dr_kpc=1.0, dz_kpc=0.2, ekin_factor=1.25, loss_scheme="upwind1").settings() == {}
    assert GridConfig(dr_kpc=1.0, dz_kpc=1.3, loss_scheme="upwind2").settings() == {"dz_kpc": 1.3,
                                                                                     "loss_scheme": "upwind2"}
    fit = FitResult(params={}, x_log=[0.0] * 10, chi2=1.0, norms=[1.0] * 4, covariance_log=np.eye(10).tolist(),
                    success=True, status=1, message="", n_evaluations=1, n_models=1, wall_s=0.0,
                    setup={"grid": {"loss_scheme": "upwind1", "dr_kpc": 4.0}, "dataset": "paper", "mode": "fast"})
    fit.check_setup(GridConfig(dr_kpc=4.0).settings(), "paper")
    with pytest.raises(ValueError, match=r"grid: fit \{'dr_kpc': 4.0\}, scan \{\}"):
        fit.check_setup(GridConfig(loss_scheme="upwind1").settings(), "paper")



def test_cli_prints_warnings_on_one_line_without_the_source(monkeypatch):
    """A warning from a command reads `warning (Category): message`, not Python's file:line plus a line of crnet's
    source (walk-through, session 18)."""
    import warnings

    from crnet.cli import format_warning

    monkeypatch.setattr(warnings, "formatwarning", warnings.formatwarning)  # restored after the test
    assert CliRunner().invoke(app, ["version"]).exit_code == 0
    assert warnings.formatwarning is format_warning
    # Python's own showwarning formats through warnings.formatwarning once it is replaced (pytest's capture
    # replaces showwarning itself, so the formatter is called directly here)
    text = warnings.formatwarning(RuntimeWarning("the fit did not converge"), RuntimeWarning, __file__, 1, "src")
    assert text == "warning (RuntimeWarning): the fit did not converge\n"
