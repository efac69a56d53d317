"""Review of session 22 (GALPROP cross-check): output on another (r, z) grid than its galdef's, FITS files that also
hold electrons and antiprotons, GALPROP's DM_int0 = +-99 test mode, the required pi0_decay key, `crnet galprop compare`
hiding warnings and non-convergence, and key lines Python splits where GALPROP's sscanf does not.

Self-contained (synthetic GALPROP output on the paper galdef's grid) except the one test that reads a reference npz,
which skips without ../shared."""

from __future__ import annotations

import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from helpers_galdef import line, tiny_text  # tests/ is on sys.path (pytest rootdir conftest)
from typer.testing import CliRunner

from crnet.cli import app
from crprop.galaxy import paper_galdef_path
from crprop.galprop.compare import load_run
from crprop.galprop.galdef import GaldefError, parse_galdef, read_galdef, write_galdef

runner = CliRunner()

NUCLEI = ((1, 1), (1, 2), (4, 7), (4, 10), (5, 10), (6, 12))
"""(Z, A) of the synthetic GALPROP output: elements the paper galdef's network has."""
PAPER_R = (0.0, 1.0, 21)
PAPER_Z = (-3.9, 0.2, 40)
"""The paper galdef's (first node, step, count) in r and z, kpc; its energies are 1 MeV/n * 1.25**k, k < 84."""
PAPER_E = 1.0 * 1.25 ** np.arange(84)
FLOAT32_PRODUCT_RTOL = 1e-6
"""Two FITS files of the same profile, each stored in float32 (eps 6e-8) and scaled by a species factor: their ratio
carries a few float32 roundings, far below 1e-6."""


def _nodes(axis: tuple[float, float, int]) -> np.ndarray:
    first, step, n = axis
    return first + step * np.arange(n)


def _flux(r: np.ndarray, z: np.ndarray, n_species: int) -> np.ndarray:
    """A smooth positive flux (species, r, z, E), cm^-2 s^-1 sr^-1 (MeV/n)^-1."""
    s = np.arange(1, n_species + 1)[:, None, None, None]
    return (s * 1e-3 * (1 + r[None, :, None, None] / 20) * np.exp(-np.abs(z)[None, None, :, None])
            * PAPER_E[None, None, None, :] ** -2.7)


def _write_fits(path: Path, species=NUCLEI, r_axis=PAPER_R, z_axis=PAPER_Z) -> np.ndarray:
    """A nuclei_full_54_* file as GALPROP's store_gcr_full writes it (E^2 flux, numpy shape (species, E, z, r));
    returns the flux (species, r, z, E)."""
    fits = pytest.importorskip("astropy.io.fits")
    flux = _flux(_nodes(r_axis), _nodes(z_axis), len(species))
    hdu = fits.PrimaryHDU(np.transpose(flux * PAPER_E ** 2, (0, 3, 2, 1)).astype(np.float32))
    for i, (val, delta) in enumerate((r_axis[:2], z_axis[:2], (0.0, np.log10(1.25)), (1.0, 1.0)), 1):
        hdu.header[f"CRVAL{i}"], hdu.header[f"CDELT{i}"] = val, delta
    for i, (zz, aa) in enumerate(species, 1):
        hdu.header[f"NUCZ{i:03d}"], hdu.header[f"NUCA{i:03d}"], hdu.header[f"NUCK{i:03d}"] = zz, aa, 0
    hdu.writeto(path)
    return flux


def _run_dir(tmp_path: Path, name: str = "run") -> Path:
    run = tmp_path / name
    run.mkdir()
    shutil.copy(paper_galdef_path(), run / f"galdef_54_{name}")
    return run


# ------------------------------------------------------------------------------------------ 1. grids
@pytest.mark.parametrize(("r_axis", "z_axis", "message"), [
    (PAPER_R, (-5.5, 0.2, 56), r"z grid reaches -5\.5\.\.5\.5 kpc in 56 nodes \(step 0\.2 kpc\), the galdef's "
                               r"-3\.9\.\.3\.9 kpc in 40 nodes \(step 0\.2 kpc\): output of another run"),
    (PAPER_R, (-3.85, 0.2, 40), r"z grid reaches -3\.85\.\.3\.95 kpc in 40 nodes"),  # same count, shifted
    ((0.0, 2.0, 11), PAPER_Z, r"r grid reaches 0\.\.20 kpc in 11 nodes \(step 2 kpc\), the galdef's 0\.\.20 kpc in 21"),
    ((0.0, 0.5, 21), PAPER_Z, r"r grid reaches 0\.\.10 kpc in 21 nodes"),
])
def test_fits_output_on_another_spatial_grid_is_refused(tmp_path, r_axis, z_axis, message) -> None:
    """Was accepted with no r / z check at all (the review's run_mismatch: GALPROP's p1 output, z_h 5.5 kpc, beside
    the crml_base galdef, gave deviations of 100-200 % and exit 0)."""
    run = _run_dir(tmp_path)
    _write_fits(run / "nuclei_full_54_run", r_axis=r_axis, z_axis=z_axis)
    with pytest.raises(ValueError, match=message) as info:
        load_run(run)
    assert str(run / "nuclei_full_54_run") in str(info.value)


def test_fits_output_on_the_galdef_grid_is_still_accepted(tmp_path) -> None:
    run = _run_dir(tmp_path)
    _write_fits(run / "nuclei_full_54_run")
    assert load_run(run).iso_flux_si.shape == (len(NUCLEI), PAPER_E.size)


def _write_npz(path: Path, r_axis=PAPER_R, z_axis=PAPER_Z, drop: str = "") -> None:
    r, z = _nodes(r_axis), _nodes(z_axis)
    at_sun = _flux(r, z, len(NUCLEI))[:, 8, z.size // 2, :]
    arrays = {"Ekin_MeV_per_n": PAPER_E, "r_kpc": r, "z_kpc": z, "iso_Z": np.array([s[0] for s in NUCLEI]),
              "iso_A": np.array([s[1] for s in NUCLEI]), "iso_flux_LIS": at_sun}
    np.savez(path, **{k: v for k, v in arrays.items() if k != drop})


def test_npz_output_on_another_spatial_grid_is_refused(tmp_path) -> None:
    """The npz check looked at the top z node only: a galdef with dz = 0.3 (27 nodes up to the same 3.9 kpc) or
    dr = 2 (11 nodes) took the output of the dz = 0.2, dr = 1 run (review's npz_mismatch: 2-8 % deviations, exit 0)."""
    run = _run_dir(tmp_path)
    _write_npz(run / "run.npz")
    assert load_run(run).iso_flux_si.shape == (len(NUCLEI), PAPER_E.size)  # the galdef's own grid
    galdef = run / "galdef_54_run"
    g = read_galdef(galdef)
    write_galdef(g.with_overrides(dz=0.3), galdef)
    with pytest.raises(ValueError, match=r"run\.npz: its z grid reaches -3\.9\.\.3\.9 kpc in 40 nodes \(step 0\.2 "
                                         r"kpc\), the galdef's -3\.9\.\.3\.9 kpc in 27 nodes \(step 0\.3 kpc\)"):
        load_run(run)
    write_galdef(g.with_overrides(dr=2.0), galdef)
    with pytest.raises(ValueError, match=r"its r grid reaches 0\.\.20 kpc in 21 nodes \(step 1 kpc\), the galdef's "
                                         r"0\.\.20 kpc in 11 nodes \(step 2 kpc\): output of another run"):
        load_run(run)
    write_galdef(g, galdef)
    _write_npz(run / "run.npz", drop="r_kpc")  # no grid, no check: refused as not the reference layout
    with pytest.raises(ValueError, match=r"missing arrays \['r_kpc'\]"):
        load_run(run)


def test_reference_npz_beside_a_galdef_of_another_dz_is_refused(tmp_path, galprop_ref_dir) -> None:
    """GALPROP's crml_base output under its galdef with dz = 0.3 kpc (the top node stays at 3.9 kpc)."""
    run = tmp_path / "crml_base"
    run.mkdir()
    g = read_galdef(galprop_ref_dir / "crml_base" / "galdef_54_crml_base")
    write_galdef(g.with_overrides(dz=0.3), run / "galdef_54_crml_base")
    shutil.copy(galprop_ref_dir / "crml_base" / "crml_base.npz", run)
    with pytest.raises(ValueError, match="z grid reaches .* 40 nodes .* 27 nodes .*another run"):
        load_run(run)


# -------------------------------------------------------------------------- 2. electrons, antiprotons
def test_fits_with_electrons_positrons_and_antiprotons_keeps_the_nuclei(tmp_path) -> None:
    """GALPROP's default runs (primary_electrons = 1) write leptons (A = 0) and antiprotons (Z = -1) into the nuclei
    file: it was refused with "iso_Z / iso_A must be matching 1-D lists of integers >= 1"."""
    plain, mixed = _run_dir(tmp_path, "plain"), _run_dir(tmp_path, "mixed")
    _write_fits(plain / "nuclei_full_54_plain")
    _write_fits(mixed / "nuclei_full_54_mixed", species=((-1, 0), *NUCLEI[:3], (1, 0), (-1, 1), *NUCLEI[3:]))
    got, want = load_run(mixed), load_run(plain)
    assert list(zip(got.iso_z.tolist(), got.iso_a.tolist(), strict=True)) == list(NUCLEI)
    # the same smooth profile scaled by the species' place in the file: nuclei after the leptons keep their own
    places = np.array([2, 3, 4, 7, 8, 9]) / np.arange(1, 7)
    np.testing.assert_allclose(got.iso_flux_si, want.iso_flux_si * places[:, None], rtol=FLOAT32_PRODUCT_RTOL)


# ------------------------------------------------------------------------------ 3., 4. galdef keys
@pytest.mark.parametrize("value", [99, -99])
def test_dm_int0_test_mode_is_refused(value) -> None:
    """GALPROP v54 turns |DM_int0| = 99 into an analytic test run (max_Z = 1, diff_reacc = 0, a slab source of
    half-height DM_double6, its own D_xx); crprop ran the galdef's own physics and said nothing."""
    with pytest.raises(GaldefError, match=rf"DM_int0 = {value}: crprop does not implement GALPROP's analytic "
                                          r"propagation test .*max_Z = 1 and diff_reacc = 0.*DM_double6.*supported: "
                                          "any value other than 99 or -99") as info:
        parse_galdef(tiny_text(DM_int0=value))
    assert info.value.key == "DM_int0"
    for other in (0, 1, 98, -98):  # a dark-matter profile: no effect on nuclei
        assert parse_galdef(tiny_text(DM_int0=other))["DM_int0"] == other


def test_missing_pi0_decay_is_warned_like_isrf_file() -> None:
    """GALPROP v54's Galdef.cc exits when pi0_decay is absent, as for ISRF_file."""
    warned = parse_galdef(tiny_text()).warnings
    assert "pi0_decay is missing: GALPROP v54 would stop (crprop does not need it)" in warned
    assert "ISRF_file is missing: GALPROP v54 would stop (crprop does not need it)" in warned
    assert not any("pi0_decay" in w for w in parse_galdef(tiny_text(pi0_decay=1)).warnings)


# ------------------------------------------------------------------------------------- 6. whitespace
@pytest.mark.parametrize("ch", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85", "\xa0"])
def test_key_lines_with_whitespace_sscanf_does_not_skip_are_refused(ch) -> None:
    """Python's str.split / \\s split on these, C's isspace does not: crprop read D0_xx = 3.25e28 where GALPROP sees
    no D0_xx line (after the key) or no number (before the value)."""
    good = line("D0_xx", "3.25e28")
    base = tiny_text()
    assert good in base
    for bad, column in ((good.replace("D0_xx ", "D0_xx" + ch, 1), 6), (good.replace("= 3", "=" + ch + "3"), 23)):
        with pytest.raises(GaldefError, match=rf"line \d+: D0_xx: the line holds {re.escape(repr(ch))}.*column "
                                              rf"{column}\).*GALPROP's sscanf does not") as info:
            parse_galdef(base.replace(good, bad))
        assert info.value.key == "D0_xx"
    # C whitespace is fine, and so is a line GALPROP never reads
    for c_space in ("\t", "\x0b", "\x0c"):
        assert parse_galdef(base.replace(good, good.replace("= 3", "=" + c_space + "3")))["D0_xx"] == 3.25e28
    assert parse_galdef(base.replace("tiny test", "tiny" + ch + "test")).title is not None
    # a comment after the value is read by neither (helper-104, session 22: it was refused)
    commented = parse_galdef(base.replace(good, good + "  D at 4" + ch + "GV"))
    assert commented["D0_xx"] == 3.25e28


# ------------------------------------------------------------------------- 5. crnet galprop compare
def _capped_propagate(monkeypatch, max_steps: int | None = None, extra_warning: str | None = None) -> None:
    """crprop.propagate.propagate (what the command imports) with fewer fast steps and an unexpected warning."""
    import crprop.propagate as module

    real = module.propagate

    def propagate(*args, **kwargs):
        if max_steps is not None:
            kwargs["max_steps"] = max_steps
        if extra_warning:
            warnings.warn(extra_warning, UserWarning, stacklevel=2)
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "propagate", propagate)


def test_compare_reports_a_solve_that_did_not_converge(tmp_path, monkeypatch) -> None:
    """Two fast steps (residual ~8e3): the table was printed and the command exited 0, every warning swallowed."""
    run = _run_dir(tmp_path)
    _write_fits(run / "nuclei_full_54_run")
    _capped_propagate(monkeypatch, max_steps=2, extra_warning="an unexpected finding")
    res = runner.invoke(app, ["galprop", "compare", str(run), "--mode", "fast", "--backend", "numpy"])
    assert res.exit_code == 1, res.output
    assert "vs GALPROP run" in res.output  # the table is still shown
    assert "error: crprop's fast solve NOT converged (1 of 1 model(s), max residual " in res.output
    assert "> tol 1e-06)" in res.output and "Traceback" not in res.output
    assert "warning: an unexpected finding" in res.output  # not hidden
    assert f"warning: galdef {run / 'galdef_54_run'}: line 84: electron_rigid_cut repeated" in res.output
    assert "NonConvergenceWarning" not in res.output and "models not converged (max residual" not in res.output
    res = runner.invoke(app, ["galprop", "compare", str(run), "--mode", "fast", "--backend", "numpy", "--json"])
    assert res.exit_code == 1 and '"converged": false' in res.output


def test_compare_in_galprop_mode_accepts_the_ladder_residual(tmp_path, monkeypatch) -> None:
    """GALPROP's ladder stops short of the steady state (crml_base: residual 39), GALPROP's own output too: mode
    galprop's NonConvergenceWarning is the one warning left out, and the exit status is 0. A six-level ladder (one
    step each, 1e9 .. 1e6 yr: residual ~1e4) keeps the run short."""
    run = _run_dir(tmp_path)
    _write_fits(run / "nuclei_full_54_run")
    galdef = run / "galdef_54_run"
    write_galdef(read_galdef(galdef).with_overrides(start_timestep=1e9, end_timestep=1e6, timestep_repeat=1), galdef)
    _capped_propagate(monkeypatch)
    res = runner.invoke(app, ["galprop", "compare", str(run), "--backend", "numpy", "--json"])
    assert res.exit_code == 0, res.output
    assert '"converged": false' in res.output and "warning: galdef" in res.output  # the solver's flag, reported
    assert "not converged" not in res.output and "NOT converged" not in res.output
