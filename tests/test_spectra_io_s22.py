"""Session-22 review of the spectra files (review by helper-105, session 22):

* an isotope spelt twice ('1H' and '01H', or full-width digits) was read as two rows of one isotope, and its element
  row counted it twice; crprop's Spectra now refuses a repeated (Z, A) as well;
* a 0-d 'converged' dataset of the wrong type was an IndexError traceback, not a message naming the dataset;
* a diverged model (residual inf, non-finite flux) was written into a file that read_spectra_h5 then refused as a
  whole; it is now refused at writing, naming the models, and `crnet simulate` exits 1 with nothing written;
* the file is written through crnet.paths.atomic_write: a failed write keeps the previous file."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers_spectra import make_spectra

import crnet.spectra_io as spectra_io
from crnet.spectra_io import parse_species, read_spectra_h5, write_spectra_h5
from crprop.spectra import Spectra

SAME_SOLVE_RTOL = 1e-12
"""numpy solves each halo group on its own (groups from one model up): the same arithmetic as alone, to round-off."""


def _rewrite(path: Path, name: str, data) -> None:
    with h5py.File(path, "a") as f:
        del f[name]
        f.create_dataset(name, data=data)


@pytest.mark.parametrize("label", ["01H", "012C", "\uff11\uff12C"])  # leading zero, full-width digits
def test_isotope_labels_are_crnet_s_own_spelling(label: str) -> None:
    with pytest.raises(ValueError, match="nor an isotope label such as '10Be'"):
        parse_species(label)
    assert parse_species("12C") == ("isotope", 6, 12)


def test_an_isotope_named_twice_is_refused(tmp_path: Path) -> None:
    sp = make_spectra(n_models=1)
    with pytest.raises(ValueError, match=r"name an isotope more than once: \(Z, A\) \[\(1, 1\)\]"):
        Spectra(sp.ekin_gev_per_n, [1, 1], [1, 1], sp.iso_flux[:, :2], sp.converged, sp.residual)
    path = tmp_path / "s.h5"
    write_spectra_h5(path, sp)
    species = read_spectra_h5(path).spectra.isotopes
    assert species[:2] == ["1H", "2H"]
    with h5py.File(path) as f:
        labels = [s.decode() for s in f["species"][()]]
    _rewrite(path, "species", np.array([lab if lab != "2H" else "01H" for lab in labels], dtype=object).astype("S"))
    with pytest.raises(ValueError, match=r"dataset 'species': species '01H' is neither"):
        read_spectra_h5(path)


def test_a_scalar_converged_dataset_is_named(tmp_path: Path) -> None:
    path = tmp_path / "s.h5"
    write_spectra_h5(path, make_spectra(n_models=1))
    _rewrite(path, "converged", np.float64(1.0))
    with pytest.raises(ValueError, match=r"dataset 'converged': must be booleans \(or 0/1\), got float64"):
        read_spectra_h5(path)


def test_a_diverged_model_is_refused_before_any_file_is_written(tmp_path: Path) -> None:
    sp = make_spectra(n_models=3)
    flux = sp.iso_flux.copy()
    flux[1, 0, 5] = np.nan
    residual = sp.residual.copy()
    residual[1] = np.inf
    diverged = Spectra(sp.ekin_gev_per_n, sp.iso_z, sp.iso_a, flux, [True, False, True], residual)
    path = tmp_path / "s.h5"
    with pytest.raises(ValueError, match=r"^models \[1\] have a non-finite field or residual"):
        write_spectra_h5(path, diverged)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_a_failed_write_keeps_the_previous_file(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "s.h5"
    first = make_spectra(n_models=2)
    write_spectra_h5(path, first)

    def half_written(tmp: Path, *args) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset("Ekin_GeV_per_n", data=np.ones(3))
        raise OSError("disk full")

    monkeypatch.setattr(spectra_io, "_write_file", half_written)
    with pytest.raises(OSError, match="disk full"):
        write_spectra_h5(path, make_spectra(n_models=3))
    kept = read_spectra_h5(path).spectra
    assert kept.n_models == 2
    np.testing.assert_array_equal(kept.iso_flux, first.iso_flux)
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]


def test_per_model_meta_follows_concatenation_and_selection() -> None:
    """crprop.propagate's halo groups concatenate and reorder their parts: the normalisation factor per model went
    with the first part only, in its order (3 values for 5 models)."""
    from crprop.spectra import concatenate_spectra

    a, b = make_spectra(n_models=3), make_spectra(n_models=2)
    a.meta.update(normalisation_factor=np.array([11.0, 12.0, 13.0]), grid_shape=(10, 15, 3))
    b.meta.update(normalisation_factor=np.array([21.0, 22.0]), grid_shape=(10, 25, 3))
    joined = concatenate_spectra([a, b])
    np.testing.assert_array_equal(joined.meta["normalisation_factor"], [11, 12, 13, 21, 22])
    assert "grid_shape" not in joined.meta  # the parts ran on different grids
    picked = joined.select([4, 0])
    np.testing.assert_array_equal(picked.meta["normalisation_factor"], [22, 11])
    np.testing.assert_array_equal(picked.iso_flux, joined.iso_flux[[4, 0]])


def test_halo_groups_record_each_model_s_normalisation() -> None:
    from dataclasses import replace

    from crprop.galaxy import GalaxySetup
    from crprop.params import CRML_BASE
    from crprop.propagate import propagate

    setup = GalaxySetup.paper().with_changes(dr_kpc=4.0, dz_kpc=1.3, ekin_factor=3.0)
    models = [replace(CRML_BASE, z_halo_kpc=8.0), CRML_BASE]
    both = propagate(setup, models, backend="numpy")
    assert len(both.meta["halo_groups"]) == 2  # numpy groups halos from one model up
    alone = [propagate(setup, [m], backend="numpy").meta["normalisation_factor"][0] for m in models]
    np.testing.assert_allclose(both.meta["normalisation_factor"], alone, rtol=SAME_SOLVE_RTOL)


def test_simulate_with_a_diverged_model_exits_1_and_writes_nothing(tmp_path: Path, monkeypatch) -> None:
    """crnet simulate wrote a file its own readers refused; now exit 1, the models named, no file."""
    from helpers_cli import TINY, write_params_toml
    from typer.testing import CliRunner

    import crprop.propagate as propagate_module
    from crnet.cli import app

    real = propagate_module.propagate

    def diverging(*args, **kwargs):  # what crprop.solvers.result.SolveResult.flag_nonfinite leaves for model 0
        spectra = real(*args, **kwargs)
        spectra.iso_flux[0, 0, 3] = np.inf
        spectra.converged[0], spectra.residual[0] = False, np.inf
        return spectra

    monkeypatch.setattr(propagate_module, "propagate", diverging)
    out = tmp_path / "s.h5"
    res = CliRunner().invoke(app, ["simulate", "--params", str(write_params_toml(tmp_path)), "--out", str(out), *TINY,
                                   "--dz", "1.3"])
    assert res.exit_code == 1, res.output
    assert "error: models [0] have a non-finite field or residual (their solve diverged)" in res.output
    assert f"nothing written to {out}" in res.output
    assert not out.exists()
