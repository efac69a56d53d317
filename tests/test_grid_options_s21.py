"""Session-21 walk-through of the spatial-grid options and pipeline configs (walk-through by helper-87, session 21):

* a z step that leaves no interior z node for the smallest halo of the prior box is refused when the config is read
  (``[scan.grid] dz_kpc``, ``--dz``), not inside the scan after the pipeline had written an empty store and a stage
  marker; crnet simulate checks its models' halos on its galdef's grid; crprop's own refusal speaks of z_halo_kpc
  and dz;
* the stretched halo's messages name the options (--dz-max, not dz_max_kpc), and --z-stretch-factor / --dz-max
  without --z-uniform-half are refused instead of being recorded as applied to a uniform grid;
* a galdef's note on its dz (not a whole number of steps) is given for the dz used, not for one --dz replaced;
* every pipeline-config error names its section ([scan], [scan.grid], [feedback]).

Nothing here propagates, except one crnet simulate on the tiny grid (a few seconds)."""

from __future__ import annotations

import json
import re
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers_cli import TINY, assert_usage_error, write_params_toml
from typer.testing import CliRunner

from crnet.cli import app
from crnet.pipeline_config import load_config
from crnet.scan.models import GridConfig, IdleStretchWarning
from crprop.galaxy import GalaxySetup, paper_galdef_path
from crprop.params import PRIOR_BOX

runner = CliRunner()

ROOT = Path(__file__).resolve().parents[1]
CI_CONFIG = ROOT / "configs" / "pipeline_ci.toml"
CI_GRID = "grid = { dr_kpc = 4.0, dz_kpc = 1.3, ekin_factor = 3.0 }"
Z_LOW = PRIOR_BOX["z_halo_kpc"][0]
"""The smallest halo of the prior box (1 kpc): what every GridConfig's z lattice must leave an interior node for."""


def _ci_config(tmp_path: Path, grid: str | None = None, **replace: str) -> Path:
    """configs/pipeline_ci.toml with its [scan] grid table replaced by ``grid`` and the lines ``key = ...`` of
    ``replace`` by ``key = value`` (first occurrence), [run] out in ``tmp_path``."""
    text = CI_CONFIG.read_text()
    if grid is not None:
        assert CI_GRID in text
        text = text.replace(CI_GRID, f"grid = {{ {grid} }}")
    for key, value in replace.items():
        text, n = re.subn(rf"(?m)^{key} = .*$", f"{key} = {value}", text, count=1)
        assert n == 1, key
    text = text.replace('out = "runs/pipeline_ci"', f'out = "{tmp_path / "run"}"')
    path = tmp_path / "ci.toml"
    path.write_text(text)
    return path


def _galdef_with_dz(tmp_path: Path, dz: str) -> Path:
    """The paper galdef with its z step set to ``dz`` (kpc; GALPROP's columns kept)."""
    text = paper_galdef_path().read_text(encoding="latin-1")
    line = "dz                   = 0.2    delta z"
    assert line in text
    path = tmp_path / "galdef_dz"
    path.write_text(text.replace(line, f"dz                   = {dz:<3}    delta z"), encoding="latin-1")
    return path


# ----------------------------------------------------------------------------- 1. a z step with no interior node

def test_pipeline_config_refuses_a_dz_without_interior_node_before_any_file(tmp_path: Path) -> None:
    """[scan.grid] dz_kpc = 100 failed inside the scan ('model 0: z_half_kpc = 5.89 leaves no interior z node') after
    scan.h5, resolved_config.json and stages/scan.started.json were written, so that the corrected config was then
    refused in the same --out (scan.grid.dz_kpc differ)."""
    config = _ci_config(tmp_path, "dr_kpc = 4.0, dz_kpc = 100.0, ekin_factor = 3.0")
    with pytest.raises(ValueError) as info:
        load_config(config)
    message = str(info.value)
    assert message.startswith("[scan.grid] dz_kpc = 100 kpc leaves no interior z node for z_halo_kpc = 1 kpc, the "
                              "smallest halo of the prior box"), message
    assert "use dz_kpc <= 1 kpc (the largest value that works on any lattice; up to 2 kpc only where a node sits at " \
           "z = 0" in message
    res = runner.invoke(app, ["pipeline", str(config), "--out", str(tmp_path / "out")])
    assert_usage_error(res, "error: [scan.grid] dz_kpc = 100 kpc leaves no interior z node")
    assert not (tmp_path / "out").exists()  # no empty store, no resolved config, no stage marker to clash with
    load_config(_ci_config(tmp_path))  # the corrected (shipped) grid


@pytest.mark.parametrize("stretched", [False, True])
@pytest.mark.parametrize("dz", [0.2, 0.5, 0.99, 1.0, 1.01, 1.2, 1.3, 1.5, 1.8, 1.95, 2.0, 2.01, 2.6, 3.0, 100.0])
def test_grid_config_halo_check_is_the_solvers_rule(dz: float, stretched: bool) -> None:
    """GridConfig refuses exactly the z steps for which crprop's z stencil (vertical_coefficients) refuses the
    smallest halo of the prior box, on the uniform and on the stretched lattice; the message's always-allowed bound
    (dz <= z_h) is allowed."""
    from crprop.discretization import vertical_coefficients

    options = {"dz_kpc": dz}
    if stretched:
        options |= {"z_uniform_half_kpc": dz, "dz_max_kpc": 2.0 * dz}
    grid = GalaxySetup.paper().with_changes(**options).grid(PRIOR_BOX["z_halo_kpc"][1])
    try:
        vertical_coefficients(grid, np.ones((grid.shape[2], 1)), np.array([Z_LOW]))
        solver_ok = True
    except ValueError as exc:
        assert "leaves no interior z node" in str(exc)
        solver_ok = False
    if solver_ok:
        GridConfig(**options)
    else:
        with pytest.raises(ValueError, match=rf"^dz_kpc = {dz:g} kpc leaves no interior z node"):
            GridConfig(**options)
    if dz <= Z_LOW:
        assert solver_ok


def test_solver_refusal_speaks_of_the_halo_and_the_z_step() -> None:
    """crprop's message named z_half_kpc with 16 digits and nothing the user sets."""
    from crprop.discretization import vertical_coefficients

    grid = GalaxySetup.paper().with_changes(dz_kpc=100.0).grid(20.0)
    with pytest.raises(ValueError) as info:
        vertical_coefficients(grid, np.ones((grid.shape[2], 1)), np.array([5.892377130687237]))
    message = str(info.value)
    assert message.startswith("model 0: its halo z_halo_kpc = 5.892 kpc leaves no interior z node on this grid: the "
                              "z step dz is 100 kpc and the node nearest the disc lies at |z| = 0 kpc"), message
    assert "Use a z step dz <= 5.892 kpc (the galdef's dz; crnet: --dz or [scan.grid] dz_kpc)" in message


def test_scan_and_simulate_refuse_the_dz_by_option(tmp_path: Path) -> None:
    out = tmp_path / "s.h5"
    res = runner.invoke(app, ["scan", "--out", str(out), "--design", "sobol", "--points", "2", *TINY, "--dz", "100",
                              "--no-progress"])
    assert_usage_error(res, "error: --dz = 100 kpc leaves no interior z node for z_halo_kpc = 1 kpc",
                       "use --dz <= 1 kpc")
    assert "dz_kpc" not in res.output and not out.exists()
    # crnet simulate: its models' halos on its galdef's grid (here a 1 kpc halo, --dz 2.5: nodes at +-1.25 kpc)
    sim = tmp_path / "sim.h5"
    res = runner.invoke(app, ["simulate", "--params", str(write_params_toml(tmp_path, z_halo_kpc=1.0)),
                              "--out", str(sim),
                              *TINY, "--dz", "2.5"])
    assert_usage_error(res, "error: --dz = 2.5 kpc leaves no interior z node for model 0's z_halo_kpc = 1 kpc: the z "
                            "node nearest the disc lies at |z| = 1.25 kpc", "use --dz <= 1 kpc")
    assert not sim.exists()
    # the galdef's own dz, named as such (--dz not given)
    galdef = _galdef_with_dz(tmp_path, "5.0")
    res = runner.invoke(app, ["simulate", "--params", str(write_params_toml(tmp_path, galdef, z_halo_kpc=1.0)), "--out",
                              str(sim), *TINY])
    assert_usage_error(res, "error: the galdef's dz = 5 kpc leaves no interior z node for model 0's z_halo_kpc = 1 kpc",
                       "use --dz <= 1 kpc")
    assert not sim.exists()


# ----------------------------------------------------------------------------- 2. the stretched halo's dz_max

def test_simulate_names_dz_max_by_option_and_as_the_default(tmp_path: Path) -> None:
    """`crnet simulate --z-uniform-half 2` on the 1.3 kpc dz said 'dz_max_kpc must be >= dz_kpc (1.3 kpc), got 1.0',
    from inside the propagation: a library field, and a value the user never set."""
    params = write_params_toml(tmp_path)
    out = tmp_path / "st.h5"
    res = runner.invoke(app, ["simulate", "--params", str(params), "--out", str(out), *TINY, "--dz", "1.3",
                              "--z-uniform-half", "2"])
    assert_usage_error(res, "error: --dz-max must be >= --dz (1.3 kpc), got 1.0 (the default, below the z step: set "
                            "--dz-max >= 1.3 kpc, the stretched halo's largest z step)")
    assert "dz_max_kpc" not in res.output and "dz_kpc" not in res.output and not out.exists()
    # --dz not given: the galdef's dz is named as such
    galdef = _galdef_with_dz(tmp_path, "1.3")
    res = runner.invoke(app, ["simulate", "--params", str(write_params_toml(tmp_path, galdef)),
                              "--out", str(out), *TINY,
                              "--z-uniform-half", "2"])
    assert_usage_error(res, "error: --dz-max must be >= the galdef's dz (1.3 kpc), got 1.0 (the default, below the z "
                            "step: set --dz-max >= 1.3 kpc")
    # the same rule in GridConfig (crnet scan, fit, the pipeline), in field names there
    with pytest.raises(ValueError, match=r"^dz_max_kpc must be >= dz_kpc \(1.3 kpc\), got 1.0 \(the default, below "
                                         r"the z step: set dz_max_kpc >= 1.3 kpc"):
        GridConfig(dz_kpc=1.3, z_uniform_half_kpc=2.0)
    with pytest.raises(ValueError, match=r"^\[scan.grid\] dz_max_kpc must be >= dz_kpc \(1.3 kpc\), got 1.0 \(the "
                                         r"default"):
        load_config(_ci_config(tmp_path, "dr_kpc = 4.0, dz_kpc = 1.3, ekin_factor = 3.0, z_uniform_half_kpc = 2.0"))


def test_simulate_runs_the_stretched_halo_when_dz_max_is_given(tmp_path: Path) -> None:
    out = tmp_path / "st.h5"
    res = runner.invoke(app, ["simulate", "--params", str(write_params_toml(tmp_path)),
                              "--out", str(out), *TINY, "--dz", "1.3",
                              "--z-uniform-half", "2.6", "--dz-max", "2"])
    assert res.exit_code == 0, res.output
    with h5py.File(out, "r") as f:
        grid = json.loads(f.attrs["grid"])
    assert grid["options"] == {"dr_kpc": 4.0, "dz_kpc": 1.3, "ekin_factor": 3.0, "z_uniform_half_kpc": 2.6,
                               "dz_max_kpc": 2.0}


# ----------------------------------------------------------------------------- 3. stretch options without the halo

@pytest.mark.parametrize(("args", "message"), [
    (["--z-stretch-factor", "1.5", "--dz-max", "3"],
     "error: --z-stretch-factor = 1.5 needs --z-uniform-half: --z-stretch-factor and --dz-max shape the stretched "
     "halo, which --z-uniform-half turns on (uniform z steps up to that |z|, wider beyond); without it the z grid is "
     "uniform and --z-stretch-factor and --dz-max would change nothing. Set --z-uniform-half or leave them out"),
    (["--dz-max", "3"], "error: --dz-max = 3 needs --z-uniform-half: --dz-max shapes the stretched halo"),
])
def test_stretch_options_without_the_stretched_halo_are_refused(tmp_path: Path, args: list[str], message: str) -> None:
    """`crnet simulate --z-stretch-factor 1.5 --dz-max 3` ran on the uniform grid and recorded both options in the
    output's grid attribute as if applied; crnet scan took them too."""
    out = tmp_path / "u.h5"
    res = runner.invoke(app, ["simulate", "--params", str(write_params_toml(tmp_path)),
                              "--out", str(out), *TINY, "--dz", "1.3",
                              *args])
    assert_usage_error(res, message)
    assert not out.exists()
    res = runner.invoke(app, ["scan", "--out", str(out), "--design", "sobol", "--points", "2", *TINY, "--dz", "1.3",
                              "--no-progress", *args])
    assert_usage_error(res, message)
    assert not out.exists()


def test_stretch_options_are_refused_as_input_but_records_of_them_still_normalise(tmp_path: Path) -> None:
    """The rule is GridConfig.check_stretch_options, applied where a user's values come in (options, [scan.grid]);
    a GridConfig made from what an earlier run recorded (such options were accepted before session 21) is still
    made, so that normalised_grid can compare it with the current settings."""
    from crnet.scan.models import normalised_grid

    with pytest.raises(ValueError, match=r"^z_stretch_factor = 1.5 needs z_uniform_half_kpc: z_stretch_factor shapes"):
        GridConfig.check_stretch_options({"dz_kpc": 1.3, "z_stretch_factor": 1.5})
    with pytest.raises(ValueError, match=r"^\[scan.grid\] dz_max_kpc = 3 needs z_uniform_half_kpc"):
        load_config(_ci_config(tmp_path, "dr_kpc = 4.0, dz_kpc = 1.3, ekin_factor = 3.0, dz_max_kpc = 3.0"))
    # GalaxySetup's 1.15 / 1.0 kpc, which a store records next to a uniform grid, change nothing: taken
    GridConfig.check_stretch_options({"z_stretch_factor": 1.15, "dz_max_kpc": 1.0})
    assert GridConfig(dz_kpc=1.3, z_stretch_factor=1.15, dz_max_kpc=1.0).settings() == {"dz_kpc": 1.3}
    recorded = {"dr_kpc": 4.0, "dz_kpc": 1.3, "z_stretch_factor": 1.5, "loss_scheme": "upwind1"}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a record is remade silently
        assert normalised_grid(recorded) == {"dr_kpc": 4.0, "dz_kpc": 1.3, "z_stretch_factor": 1.5,
                                             "loss_scheme": None}
    # made in Python (session 22): warned, naming the field, and the z grid stays uniform
    with pytest.warns(IdleStretchWarning, match=r"^GridConfig: z_stretch_factor = 1.5 needs z_uniform_half_kpc"):
        idle = GridConfig(dz_kpc=1.3, z_stretch_factor=1.5)
    assert np.allclose(np.diff(idle.setup().grid().z_kpc), 1.3)


# ----------------------------------------------------------------------------- 4. the galdef's dz note

def _stderr_notes(output: str) -> list[str]:
    return [line for line in output.splitlines() if "is not a whole number" in line]


def test_galdef_dz_note_is_for_the_dz_used(tmp_path: Path) -> None:
    """A galdef with dz = 5.0 (7.8 / 5 = 1.56 steps) under --dz 1.3 was warned about its own dz, which is not used.
    The refused stretch option stops each run after the galdef's notes, before any propagation."""
    galdef = _galdef_with_dz(tmp_path, "5.0")
    stop = ["--dz-max", "3"]  # refused after the notes: no propagation
    base = ["simulate", "--galdef", str(galdef), "--out", str(tmp_path / "g.h5"), *TINY]
    res = runner.invoke(app, [*base, *stop])
    assert_usage_error(res)
    assert _stderr_notes(res.output) == [f"warning: galdef {galdef}: (z_max - z_min) / dz = 1.56 is not a whole "
                                         "number: GALPROP's nodes are z_min + i dz for i < int(that + 1.5), so the "
                                         "last one is not at z_max = 3.9 kpc"]
    res = runner.invoke(app, [*base, "--dz", "1.3", *stop])  # 7.8 / 1.3 = 6 steps
    assert_usage_error(res)
    assert _stderr_notes(res.output) == [], res.output
    res = runner.invoke(app, [*base, "--dz", "1.0", *stop])  # 7.8 / 1.0: the note for the dz used, by option
    assert_usage_error(res)
    assert _stderr_notes(res.output) == [f"warning: galdef {galdef} with --dz 1: (z_max - z_min) / dz = 7.8 is not a "
                                         "whole number: GALPROP's nodes are z_min + i dz for i < int(that + 1.5), so "
                                         "the last one is not at z_max = 3.9 kpc"]
    assert "electron_rigid_cut repeated" in res.output  # the galdef's other notes are kept


def test_galdef_step_note_is_the_galdefs_warning() -> None:
    from crprop.galprop.galdef import grid_step_note, read_galdef

    g = read_galdef(paper_galdef_path())
    assert grid_step_note(g, "dz") is None and grid_step_note(g, "dr") is None  # 7.8 / 0.2, 20 / 1
    assert grid_step_note(g, "dr", 3.0) == ("(r_max - r_min) / dr = 6.66667 is not a whole number: GALPROP's nodes "
                                            "are r_min + i dr for i < int(that + 1.5), so the last one is not at "
                                            "r_max = 20.0 kpc")


# ----------------------------------------------------------------------------- 5. section names in config errors

@pytest.mark.parametrize(("grid", "replace", "message"), [
    (None, {"backend": '"foo"'}, "[scan] backend must be one of"),
    (None, {"design": '"foo"'}, "[scan] design must be one of"),
    ("dr_kpc = 0.0, dz_kpc = 1.3, ekin_factor = 3.0", {},
     "[scan.grid] dr_kpc must be a finite positive number, got 0.0"),
    (None, {"n_points": "-1"}, "[scan] n_points must be >= 0, got -1"),
    (None, {"max_rounds": "0"}, "[feedback] max_rounds must be >= 1 (rounds), got 0"),
    (None, {"threads": "-1"}, "[run] threads must be >= 0"),  # named its section before: not twice
])
def test_pipeline_config_errors_name_their_section(tmp_path: Path, grid: str | None, replace: dict[str, str],
                                                   message: str) -> None:
    with pytest.raises(ValueError) as info:
        load_config(_ci_config(tmp_path, grid, **replace))
    assert str(info.value).startswith(message), str(info.value)


def test_nested_section_messages_drop_the_class_name(tmp_path: Path) -> None:
    path = _ci_config(tmp_path)
    path.write_text(path.read_text() + "\n[scan.sampler]\ntarget_acceptance = 2.0\n")
    with pytest.raises(ValueError, match=r"^\[scan.sampler\] target_acceptance must lie in \(0, 1\), got 2.0$"):
        load_config(path)


def test_grid_message_names_every_field_by_flag_but_not_a_quoted_value() -> None:
    from crnet.commands.grid_options import grid_message

    assert grid_message(ValueError("dz_max_kpc must be >= dz_kpc (1.3 kpc), got 1.0 (set dz_max_kpc >= 1.3 kpc)")) \
        == "--dz-max must be >= --dz (1.3 kpc), got 1.0 (set --dz-max >= 1.3 kpc)"
    assert grid_message(ValueError("half_lives must be one of ('galprop', 'measured'), got 'dr_kpc'")) \
        == "--half-lives must be one of ('galprop', 'measured'), got 'dr_kpc'"
    assert grid_message(ValueError("loss_scheme: see GalaxySetup.dz_kpc")) == "--loss-scheme: see GalaxySetup.dz_kpc"
