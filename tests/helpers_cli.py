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
    """Three models on the CR-ML grid (test_spectra_io.make_spectra; model 1 did not converge, residual 5.05e-8)."""
    from test_spectra_io import make_spectra

    from crnet.spectra_io import write_spectra_h5

    write_spectra_h5(path, make_spectra(), params=np.arange(6.0).reshape(3, 2), param_names=["D0", "delta"])
    return path
