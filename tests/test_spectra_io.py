"""Spectra HDF5 files (crnet.spectra_io) and `crnet chi2` on them."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from helpers_spectra import GRID, ISO, make_spectra
from typer.testing import CliRunner

from crnet.cli import app
from crnet.likelihood import chi2
from crnet.spectra_io import parse_species, read_spectra_h5, write_spectra_h5

runner = CliRunner()


def test_round_trip(tmp_path: Path) -> None:
    sp = make_spectra()
    params = np.arange(6.0).reshape(3, 2)
    path = tmp_path / "s.h5"
    write_spectra_h5(path, sp, params=params, param_names=["D0", "delta"], attrs={"backend": "cuda"})
    out = read_spectra_h5(path)
    spectra, p, names, attrs = out
    np.testing.assert_array_equal(spectra.iso_flux, sp.iso_flux)
    np.testing.assert_array_equal(spectra.ekin_gev_per_n, GRID)
    assert spectra.isotopes == sp.isotopes and spectra.elements == sp.elements
    np.testing.assert_array_equal(spectra.converged, sp.converged)
    np.testing.assert_array_equal(spectra.residual, sp.residual)
    np.testing.assert_array_equal(p, params)
    assert names == ["D0", "delta"]
    assert attrs["backend"] == "cuda" and attrs["mode"] == "lis" and attrs["grid"] == {"n_r": 21, "n_z": 40}
    assert "crnet_version" in attrs
    with h5py.File(path) as f:
        species = [s.decode() for s in f["species"][()]]
        assert species[: len(sp.elements)] == sp.elements
        assert f["flux_lis"].shape == (3, len(species), GRID.size)
        np.testing.assert_allclose(f["flux_lis"][:, species.index("Be"), :], sp.flux("Be"), rtol=1e-15)
    # without parameters
    write_spectra_h5(tmp_path / "n.h5", sp)
    assert read_spectra_h5(tmp_path / "n.h5").params.shape == (3, 0)


def test_writer_refuses_bad_input(tmp_path: Path) -> None:
    sp = make_spectra()
    with pytest.raises(ValueError, match="unmodulated"):
        write_spectra_h5(tmp_path / "m.h5", sp.modulate(500.0))
    with pytest.raises(ValueError, match="params must have shape"):
        write_spectra_h5(tmp_path / "p.h5", sp, params=np.ones((2, 2)), param_names=["a", "b"])
    with pytest.raises(ValueError, match="param_names has 1"):
        write_spectra_h5(tmp_path / "p.h5", sp, params=np.ones((3, 2)), param_names=["a"])


def test_parse_species() -> None:
    assert parse_species("B") == ("element", 5, None)
    assert parse_species("10Be") == ("isotope", 4, 10)
    for bad in ("Bx", "1Be", "Be10", "e+"):
        with pytest.raises(ValueError, match="neither an element"):
            parse_species(bad)


def _corrupt(path: Path, name: str, data: np.ndarray | None) -> None:
    with h5py.File(path, "a") as f:
        del f[name]
        if data is not None:
            kw = {"dtype": h5py.string_dtype("utf-8")} if data.dtype == object else {}
            f.create_dataset(name, data=data, **kw)


@pytest.mark.parametrize(
    "name,data,match",
    [
        ("flux_lis", None, r"missing dataset\(s\) \['flux_lis'\]"),
        ("Ekin_GeV_per_n", GRID[::-1].copy(), "strictly increasing"),
        ("Ekin_GeV_per_n", GRID[:-1].copy(), "does not match"),
        (
            "species",
            np.array(["H", "Li", "Bx"] + [f"{a}Li" for a in range(3, 18)], dtype=object),
            "neither an element",
        ),
        ("converged", np.ones(2, bool), "one per model"),
        # review of session 13: these were read as converged / finite / real
        ("converged", np.array([b"no", b"no", b"no"], dtype=object), "must be booleans"),
        ("converged", np.array([0.5, np.nan, 1.0]), "must be booleans"),
        ("residual", np.array([np.nan, -1.0, 0.0]), "finite and >= 0"),
    ],
)
def test_reader_refuses_malformed_files(
    tmp_path: Path, name: str, data: np.ndarray | None, match: str
) -> None:
    path = tmp_path / "bad.h5"
    write_spectra_h5(path, make_spectra())
    _corrupt(path, name, data)
    with pytest.raises(ValueError, match=match) as err:
        read_spectra_h5(path)
    assert str(path) in str(err.value)


def test_reader_refuses_other_units_complex_values_and_duplicate_names(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    write_spectra_h5(path, make_spectra(), params=np.ones((3, 2)), param_names=["a", "b"])
    with h5py.File(path, "a") as f:
        f.attrs["flux_units"] = "cm^-2 s^-1 sr^-1 (MeV/n)^-1"
    with pytest.raises(ValueError, match="flux_units = 'cm.*crnet reads 'm"):
        read_spectra_h5(path)
    write_spectra_h5(path, make_spectra(), params=np.ones((3, 2)), param_names=["a", "b"])
    with h5py.File(path, "a") as f:
        f["params"].attrs["names"] = ["a", "a"]
    with pytest.raises(ValueError, match="duplicate column names"):
        read_spectra_h5(path)
    write_spectra_h5(path, make_spectra())
    with h5py.File(path, "a") as f:
        flux = f["flux_lis"][()]
        del f["flux_lis"]
        f.create_dataset("flux_lis", data=flux.astype(np.complex128))
    with pytest.raises(ValueError, match="dataset 'flux_lis': must be real numbers .* got complex128"):
        read_spectra_h5(path)
    # every numeric dataset by the same rule: a complex residual lost its imaginary part, bool parameters read as 0/1
    for name, cast in (("residual", np.complex128), ("params", bool), ("Ekin_GeV_per_n", np.complex64)):
        write_spectra_h5(path, make_spectra(), params=np.ones((3, 2)), param_names=["a", "b"])
        with h5py.File(path, "a") as f:
            values, attrs = f[name][()], dict(f[name].attrs)
            del f[name]
            f.create_dataset(name, data=values.astype(cast)).attrs.update(attrs)
        with pytest.raises(ValueError, match=rf"dataset '{name}': must be real numbers"):
            read_spectra_h5(path)


def test_reader_refuses_inconsistent_elements(tmp_path: Path) -> None:
    path = tmp_path / "bad.h5"
    write_spectra_h5(path, make_spectra())
    with h5py.File(path, "a") as f:
        f["flux_lis"][:, 1, :] *= 1.01  # element row 'Li' (after 'H') no longer the sum of 6Li + 7Li
    with pytest.raises(ValueError, match="'Li' is not the sum of its isotopes"):
        read_spectra_h5(path)
    with pytest.raises(ValueError, match="no such spectra file"):
        read_spectra_h5(tmp_path / "absent.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(ValueError, match="not a readable HDF5"):
        read_spectra_h5(tmp_path / "text.h5")


def test_cli_chi2_table_and_json(tmp_path: Path) -> None:
    sp = make_spectra()
    path = tmp_path / "s.h5"
    write_spectra_h5(path, sp, params=np.arange(6.0).reshape(3, 2), param_names=["D0", "delta"])
    expected = chi2(sp, "paper")
    res = runner.invoke(app, ["chi2", str(path)])
    assert res.exit_code == 0, res.output
    lines = [ln for ln in res.output.splitlines() if ln and not ln.startswith("#")]
    assert lines[0].split() == ["model", "chi2_tot", "n_points", "q_C", "xi_Li", "xi_Be", "qO_over_qC"]
    first = lines[1].split()
    assert float(first[1]) == pytest.approx(expected.chi2_tot[0], rel=1e-6) and first[2] == "397"
    res = runner.invoke(app, ["chi2", str(path), "--dataset", "paper", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["n_points"] == 397 and len(out["models"]) == 3
    rec = out["models"][1]
    assert rec["chi2_tot"] == pytest.approx(expected.chi2_tot[1], rel=1e-12)
    assert rec["q_C"] == pytest.approx(expected.q_c[1], rel=1e-12)
    assert set(rec) >= {"xi_Li", "xi_Be", "qO_over_qC", "n_points", "chi2_scan", "params"}
    assert rec["params"] == {"D0": 2.0, "delta": 3.0}
    assert out["delta_chi2_thresholds_14dof"]["3sigma"] == pytest.approx(33.20, abs=5e-3)
    res = runner.invoke(app, ["chi2", str(path), "-d", "ams02-2021", "--phi", "600", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["models"][0]["phi_MV"] == 600.0
    res = runner.invoke(app, ["chi2", str(path), "-d", "ams02-2021-ace2009", "--phi", "1=600", "--phi", "2=300"])
    assert res.exit_code == 0, res.output
    assert "# phi2: modulation period '2009/03/23" in res.output
    row = [ln.split() for ln in res.output.splitlines() if ln and not ln.startswith("#")][1]
    assert [float(v) for v in row[-2:]] == [600.0, 300.0]
    for bad, message in ((["600"], "2 modulation periods"), (["3=600"], "N in 1..2"), (["1=x"], "N=MV")):
        res = runner.invoke(app, ["chi2", str(path), "-d", "ams02-2021-ace2009", *sum((["--phi", b] for b in bad), [])])
        assert res.exit_code == 2 and message in res.output, res.output
    res = runner.invoke(app, ["chi2", str(path), "-d", "ams02-2021", "--phi", "2=500"])  # its one period was ['']
    assert res.exit_code == 2 and "modulation periods ['all its top-of-atmosphere blocks'])" in res.output, res.output


def test_cli_chi2_refuses_wrong_species_or_grid(tmp_path: Path) -> None:
    no_oxygen = make_spectra(iso=[i for i in ISO if i[0] != 8])
    path = tmp_path / "noO.h5"
    write_spectra_h5(path, no_oxygen)
    res = runner.invoke(app, ["chi2", str(path)])
    assert res.exit_code == 2 and "lack species ['O']" in res.output
    short = make_spectra(grid=GRID[30:])
    path = tmp_path / "short.h5"
    write_spectra_h5(path, short)
    res = runner.invoke(app, ["chi2", str(path)])
    assert res.exit_code == 2 and "outside the model grid" in res.output and "data block" in res.output
    res = runner.invoke(app, ["chi2", str(tmp_path / "missing.h5")])
    assert res.exit_code == 2 and "no such spectra file" in res.output
    res = runner.invoke(app, ["chi2", str(path), "--dataset", "nope"])
    assert res.exit_code == 2 and "unknown data set" in res.output
