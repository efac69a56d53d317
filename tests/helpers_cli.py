"""What the CLI tests share: the check of a usage error, and a small spectra file."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def assert_usage_error(res, *fragments: str) -> None:
    """``res`` (a CliRunner result) is a usage error: exit status 2 from typer.Exit, no traceback, every fragment in
    its output."""
    assert res.exit_code == 2, res.output
    assert isinstance(res.exception, SystemExit), repr(res.exception)  # not an uncaught exception
    assert "Traceback" not in res.output
    for f in fragments:
        assert f in res.output, (f, res.output)


def write_test_spectra(path: Path) -> Path:
    """Three models on the CR-ML grid (helpers_spectra.make_spectra; model 1 did not converge, residual 5.05e-8)."""
    from helpers_spectra import make_spectra

    from crnet.spectra_io import write_spectra_h5

    write_spectra_h5(path, make_spectra(), params=np.arange(6.0).reshape(3, 2), param_names=["D0", "delta"])
    return path


TINY = ["--dr", "4", "--ekin-factor", "3", "--backend", "numba"]
"""The tiny grid's r step and energy factor (its dz, 1.3 kpc, given where a test needs it)."""
MODEL = {"d0_1e28_cm2_s": 5.0, "delta": 0.4, "eta": 0.5, "v_alfven_km_s": 20.0, "z_halo_kpc": 3.9, "nu1": 0.8,
         "nu2": 2.3, "nu3": 2.25, "r_break1_mv": 1000.0, "r_break2_mv": 3.0e5}
"""A Table 1 parameter set inside the prior box (crml_base-like)."""


def write_params_toml(tmp_path: Path, galdef: Path | None = None, **changes: float) -> Path:
    """A crnet simulate --params TOML: :data:`MODEL` with ``changes``, and a [galdef] path when given."""
    path = tmp_path / "model.toml"
    lines = [f"{k} = {v!r}" for k, v in {**MODEL, **changes}.items()]
    if galdef is not None:
        lines += ["[galdef]", f'path = "{galdef}"']
    path.write_text("\n".join(lines) + "\n")
    return path
