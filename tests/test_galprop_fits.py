"""GALPROP nuclei FITS reader, on synthetic files written in GALPROP's store_gcr(_full) layout."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest

from crprop.galprop.fits import GalpropFitsError, read_nuclei_fits

fits = pytest.importorskip("astropy.io.fits")

SPECIES = ((1, 1, 0), (1, 2, 0), (4, 7, 0), (4, 10, 0), (5, 10, 0), (6, 12, 0))
R0, DR, Z0, DZ, E0, EF = 0.0, 1.0, -3.9, 0.2, 1.0, 1.25
N_R, N_Z, N_E = 21, 40, 84
# GALPROP stores E^2 * flux as float32 (eps 6e-8); the reader divides E^2 back out in float64, so a flux read
# back is the written one to a few float32 roundings
FLOAT32_STORAGE_RTOL = 2e-7
# grids rebuilt from the header's CRVAL / CDELT in float64 (10 ** log10 for E): a few ulp
HEADER_GRID_TOL = 1e-12


def flux_model() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A smooth positive flux (species, r, z, E) in cm^-2 s^-1 sr^-1 (MeV/n)^-1 and its grids."""
    r = R0 + DR * np.arange(N_R)
    z = Z0 + DZ * np.arange(N_Z)
    e = E0 * EF ** np.arange(N_E)
    s = np.arange(1, len(SPECIES) + 1)[:, None, None, None]
    flux = (s * 1e-3 * (1.0 + r[None, :, None, None] / 20.0) * np.exp(-np.abs(z)[None, None, :, None])
            * e[None, None, None, :] ** -2.7)
    return flux, r, z, e


def galprop_hdu(flux: np.ndarray, e: np.ndarray, z_start: float, species_keys: bool = True) -> object:
    """Primary HDU exactly as store_gcr_full writes it: E^2 * flux, numpy shape (species, E, z, r)."""
    image = np.transpose(flux * e ** 2, (0, 3, 2, 1)).astype(np.float32)
    hdu = fits.PrimaryHDU(image)
    hdu.header["EXPOSURE"] = 1500
    for i, (val, delta) in enumerate(((R0, DR), (z_start, DZ), (np.log10(E0), np.log10(EF)), (1.0, 1.0)), 1):
        hdu.header[f"CRVAL{i}"] = val
        hdu.header[f"CDELT{i}"] = delta
    if species_keys:
        for i, (zz, aa, kk) in enumerate(SPECIES, 1):
            hdu.header[f"NUCZ{i:03d}"] = zz
            hdu.header[f"NUCA{i:03d}"] = aa
            hdu.header[f"NUCK{i:03d}"] = kk
    hdu.header["NUCNORM"] = 1.0
    return hdu


def test_reads_full_file(tmp_path: Path) -> None:
    flux, r, z, e = flux_model()
    path = tmp_path / "nuclei_full_54_test"
    galprop_hdu(flux, e, Z0).writeto(path)
    out = read_nuclei_fits(path)
    assert out.full and out.flux.shape == (len(SPECIES), N_R, N_Z, N_E)
    np.testing.assert_allclose(out.r_kpc, r)
    np.testing.assert_allclose(out.z_kpc, z, atol=HEADER_GRID_TOL)
    np.testing.assert_allclose(out.ekin_mev_per_n, e, rtol=HEADER_GRID_TOL)
    np.testing.assert_allclose(out.flux, flux, rtol=FLOAT32_STORAGE_RTOL)
    np.testing.assert_allclose(out.e2_flux(), flux * e ** 2, rtol=FLOAT32_STORAGE_RTOL)
    assert out.Z.tolist() == [s[0] for s in SPECIES] and out.A.tolist() == [s[1] for s in SPECIES]
    assert out.K_electron.tolist() == [0] * len(SPECIES) and out.nucnorm == 1.0
    i_b10 = out.species_index(5, 10)
    np.testing.assert_allclose(out.flux[i_b10, 8, 19], flux[4, 8, 19], rtol=FLOAT32_STORAGE_RTOL)
    with pytest.raises(KeyError):
        out.species_index(26, 56)


def test_reads_gzipped_single_slice_file_and_species_table(tmp_path: Path) -> None:
    flux, _, z, e = flux_model()
    iz = int(1e-6 - Z0 / DZ)  # GALPROP's output slice: z = -0.1 for this grid
    path = tmp_path / "nuclei_54_test.gz"
    hdu = galprop_hdu(flux[:, :, iz:iz + 1, :], e, float(z[iz]), species_keys=False)
    table = fits.BinTableHDU.from_columns([
        fits.Column(name="Z", format="J", array=np.array([s[0] for s in SPECIES])),
        fits.Column(name="A", format="J", array=np.array([s[1] for s in SPECIES])),
    ])
    buffer = tmp_path / "raw.fits"
    fits.HDUList([hdu, table]).writeto(buffer)
    path.write_bytes(gzip.compress(buffer.read_bytes()))
    out = read_nuclei_fits(path)
    assert not out.full and out.z_kpc == pytest.approx([-0.1])
    np.testing.assert_allclose(out.flux[:, :, 0, :], flux[:, :, iz, :], rtol=FLOAT32_STORAGE_RTOL)
    assert out.A.tolist() == [s[1] for s in SPECIES] and out.names == ("",) * len(SPECIES)


def test_refuses_malformed_files(tmp_path: Path) -> None:
    flux, _, _, e = flux_model()

    def write(name: str, hdu: object) -> Path:
        path = tmp_path / name
        hdu.writeto(path)  # type: ignore[attr-defined]
        return path

    hdu = galprop_hdu(flux, e, Z0)
    del hdu.header["NUCA003"]
    with pytest.raises(GalpropFitsError, match="NUCA003"):
        read_nuclei_fits(write("missing_species.fits", hdu))
    with pytest.raises(GalpropFitsError, match="NUCZ001.*no table"):
        read_nuclei_fits(write("no_species.fits", galprop_hdu(flux, e, Z0, species_keys=False)))
    hdu = galprop_hdu(flux, e, Z0)
    del hdu.header["CDELT3"]
    with pytest.raises(GalpropFitsError, match="CDELT3 missing"):
        read_nuclei_fits(write("no_cdelt.fits", hdu))
    with pytest.raises(GalpropFitsError, match="NAXIS = 3"):
        read_nuclei_fits(write("three_axes.fits", fits.PrimaryHDU(np.zeros((2, 3, 4), np.float32))))
    with pytest.raises(GalpropFitsError, match="3D"):
        read_nuclei_fits(write("five_axes.fits", fits.PrimaryHDU(np.zeros((1, 2, 3, 4, 5), np.float32))))
    bad = flux.copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(GalpropFitsError, match="NaN"):
        read_nuclei_fits(write("nan.fits", galprop_hdu(bad, e, Z0)))
    text = tmp_path / "not_fits.txt"
    text.write_text("this is not a FITS file\n")
    with pytest.raises(GalpropFitsError, match="cannot open"):
        read_nuclei_fits(text)
    assert issubclass(GalpropFitsError, ValueError)


def test_load_run_refuses_a_single_slice_and_output_of_another_run(tmp_path: Path, galprop_ref_dir: Path) -> None:
    """crnet galprop compare checks the output against its galdef before propagating (review of session 13: another
    run's npz loaded fine, and a single-slice FITS failed inside Grid)."""
    import shutil

    from crprop.galaxy import paper_galdef_path
    from crprop.galprop.compare import load_run

    flux, _, z, e = flux_model()
    run = tmp_path / "slice"
    run.mkdir()
    shutil.copy(paper_galdef_path(), run / "galdef_54_slice")  # the paper grid: 21 r x 40 z x 84 E as flux_model
    iz = int(1e-6 - Z0 / DZ)
    galprop_hdu(flux[:, :, iz:iz + 1, :], e, float(z[iz])).writeto(run / "nuclei_54_slice")
    with pytest.raises(ValueError, match="not a single z slice"):
        load_run(run)
    (run / "nuclei_54_slice").unlink()
    galprop_hdu(flux, e, Z0).writeto(run / "nuclei_full_54_slice")
    full = load_run(run)
    assert full.iso_flux_si.shape == (len(SPECIES), N_E)  # the full file of the same grid is accepted
    # the Sun (r = 8.5 kpc, z = 0) of flux_model: linear in r, so the r interpolation between the 8 and 9 kpc
    # nodes is exact; exp(-|z|) is the same at the z = -0.1 and +0.1 nodes that bracket z = 0; then cgs MeV -> SI GeV
    r_sun_kpc, z_node_kpc = 8.5, 0.1
    np.testing.assert_allclose(z[np.abs(z) < DZ], [-z_node_kpc, z_node_kpc], atol=HEADER_GRID_TOL)  # none at z = 0
    s = np.arange(1, len(SPECIES) + 1)[:, None]
    at_sun = s * 1e-3 * (1.0 + r_sun_kpc / 20.0) * np.exp(-z_node_kpc) * e[None, :] ** -2.7
    cgs_mev_to_si_gev = 1e4 * 1e3  # cm^-2 -> m^-2, MeV^-1 -> GeV^-1
    np.testing.assert_allclose(full.iso_flux_si, at_sun * cgs_mev_to_si_gev, rtol=FLOAT32_STORAGE_RTOL)
    np.testing.assert_allclose(full.ekin_gev_per_n, e / 1e3, rtol=HEADER_GRID_TOL)
    assert full.iso_z.tolist() == [sp[0] for sp in SPECIES] and full.iso_a.tolist() == [sp[1] for sp in SPECIES]
    from crprop.galprop.compare import deviation_table

    ref = full.spectra()
    with pytest.raises(ValueError, match="holds no grid energy"):
        deviation_table(ref, ref, 2e5, 1e6)
    for other, message in (("p6", "z grid reaches"), ("crml_base_efine", "energies")):
        mixed = tmp_path / "crml_base"
        shutil.rmtree(mixed, ignore_errors=True)
        mixed.mkdir()
        shutil.copy(galprop_ref_dir / "crml_base" / "galdef_54_crml_base", mixed)
        shutil.copy(galprop_ref_dir / other / f"{other}.npz", mixed / "crml_base.npz")
        with pytest.raises(ValueError, match=f"{message}.*another run"):
            load_run(mixed)
