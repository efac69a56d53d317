"""Galdef reader / writer: GALPROP v54 semantics on the reference galdefs, and crprop's strictness."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from helpers_galdef import RUNS, line, tiny, tiny_text

from crprop.galprop.galdef import (
    TOTAL_CROSS_SECTION_MODELS,
    GaldefError,
    KeyClass,
    parse_galdef,
    read_galdef,
    write_galdef,
)
from crprop.galprop.galdef_keys import REGISTRY, key_spec


# ------------------------------------------------------------------------------ reference galdefs
def ref_paths(galprop_ref_dir: Path, shared_dir: Path) -> list[Path]:
    paths = [galprop_ref_dir / run / f"galdef_54_{run}" for run in RUNS]
    crml = shared_dir / "reference/cr-ml/MC_setup/galdef_54_crml"
    return paths + [galprop_ref_dir / "galdef_54_crml", crml]


def test_reads_every_reference_galdef_and_round_trips(galprop_ref_dir: Path, shared_dir: Path,
                                                      tmp_path: Path) -> None:
    paths = ref_paths(galprop_ref_dir, shared_dir)
    assert len(paths) == 17 and all(p.is_file() for p in paths)
    for path in paths:
        g = read_galdef(path)
        out = write_galdef(g, tmp_path / path.name)
        g2 = read_galdef(out)
        assert g2.as_dict() == g.as_dict(), path
        assert g2.lines == g.lines
        assert out.read_text() == path.read_text()  # byte-identical (files end with a newline)
        assert g.header[:2] == ("1234567890123456789012", "======================value")
        assert g.title == "MCMC fits with convection and no reacc"


@pytest.mark.parametrize("run", RUNS)
def test_reference_values_and_grid_match_json(galprop_ref_dir: Path, run: str) -> None:
    g = read_galdef(galprop_ref_dir / run / f"galdef_54_{run}")
    meta = json.loads((galprop_ref_dir / run / f"{run}.json").read_text())
    for key, text in meta["galdef_key_values"].items():
        value = g[key]
        if isinstance(value, str):
            assert value == text, key
        else:
            assert value == pytest.approx(float(text), rel=1e-12), key
    grid = g.grid()
    n_json = (meta["grid"]["n_r"], meta["grid"]["n_z_full"], meta["grid"]["n_E"])
    assert (grid.n_r, grid.n_z, grid.n_E) == n_json
    with np.load(galprop_ref_dir / run / f"{run}.npz") as npz:
        np.testing.assert_allclose(grid.ekin_mev_per_n(), npz["Ekin_MeV_per_n"], rtol=1e-12)
        np.testing.assert_allclose(grid.r_kpc(), npz["r_kpc"], atol=1e-12)
        np.testing.assert_allclose(grid.z_kpc(), npz["z_kpc"], atol=1e-9)
    assert grid.to_grid().shape == (grid.n_r, grid.n_z, grid.n_E)


def test_first_occurrence_wins_in_reference(galprop_ref_dir: Path) -> None:
    g = read_galdef(galprop_ref_dir / "crml_base_tconv" / "galdef_54_crml_base_tconv")
    assert g["end_timestep"] == 100.0  # the appended "end_timestep = 1.0e1" is ignored, as by GALPROP
    assert g["timestep_repeat"] == 200
    assert g["electron_rigid_cut"] == 1.0e10
    assert any("end_timestep repeated" in w for w in g.warnings)
    assert any("electron_rigid_cut repeated" in w for w in g.warnings)


def test_typed_values_in_reference(galprop_ref_dir: Path) -> None:
    g = read_galdef(galprop_ref_dir / "galdef_54_crml")
    assert g["cross_section_option"] == 12 and g.raw("cross_section_option") == "012"
    assert g["B_field_model"] == 50100020
    assert g["B_field_parameters"] == tuple(float(-i) for i in range(1, 11))
    assert g["ISRF_factors"] == (1.0, 1.0, 1.0)
    assert g["verbose"] == 0 and g["source_parameters_1"] == 1.25
    assert g.D0_xx == 3.25e28 and g.inj_spectrum_type == "rigidity"
    assert g["nuc_g_3"] == 3.0 and not g.is_set("nuc_g_3")  # GALPROP default
    assert g.source_parameters() == (0.2, 1.25, 3.56, 15.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    assert g.elements() == (1, 3, 4, 5, 6, 7, 8, 10, 12, 14)
    abund = g.isotopic_abundances()
    assert abund[(6, 12)] == 3600.0 and abund[(8, 16)] == 4600.0 and (2, 4) not in abund
    assert g.classification("gamma_rays") is KeyClass.IGNORED
    assert g.classification("SNR_events") is KeyClass.UNSUPPORTED
    assert g.classification("D0_xx") is KeyClass.IMPLEMENTED


def test_registry_covers_reference_keys_and_fits_galprop_key_field(galprop_ref_dir: Path) -> None:
    g = read_galdef(galprop_ref_dir / "crml_base" / "galdef_54_crml_base")
    assert all(key_spec(k) is not None for k in g.entries)
    assert all(len(k) <= 20 for k in REGISTRY)
    assert not REGISTRY["sdp_D0"].read_by_galprop and REGISTRY["D0_xx"].read_by_galprop


# --------------------------------------------------------------------------------- self-contained
def test_tiny_galdef_reads(tmp_path: Path) -> None:
    g = tiny(tmp_path)
    assert g["D0_xx"] == 3.25e28 and g["cross_section_option"] == 12
    assert g.grid().n_z == 40 and g.elements() == (1, 6)
    assert g["network_iter_compl"] == 1 and g["network_iter_sec"] == 1  # derived GALPROP defaults
    assert g.with_overrides(network_iterations=3)["network_iter_compl"] == 2
    assert any("ISRF_file is missing" in w for w in g.warnings)
    assert isinstance(GaldefError("x"), ValueError)


def test_unknown_key_is_an_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(GaldefError, match="'D0xx'.*did you mean 'D0_xx'") as info:
        tiny(tmp_path, extra_lines=(line("D0xx", "1e28"),))
    assert info.value.key == "D0xx"
    with pytest.raises(GaldefError, match="d0_xx"):
        parse_galdef(tiny_text() + line("d0_xx", "1e28"))  # keys are case sensitive


@pytest.mark.parametrize(("key", "value", "supported"), [
    ("n_spatial_dimensions", 3, "2"),
    ("diff_reacc", 11, "0 or 1"),
    ("diff_reacc", -1, "0 or 1"),
    ("solution_method", 2, "1"),
    ("SNR_events", 1, "0"),
    ("secondary_protons", 1, "0"),
    ("Diffusion_aniso", 1, "0"),
    ("convection", 2, "crprop supports 0"),
    ("source_model", 2, "1"),
    ("inj_spectrum_type", "Etot", "'rigidity'"),
    ("p_Ekin_grid", "p", "'Ekin'"),
    ("total_cross_section", 4, "0 or 1 or 2 or 3"),
    ("cross_section_option", 11, "12"),
    ("nH2_model", 2, "1"),
    ("rigid_max", "1e5", "no injection cut-off"),
])
def test_unsupported_physics_is_an_error_naming_key(tmp_path: Path, key: str, value: object,
                                                    supported: str) -> None:
    with pytest.raises(GaldefError, match=key) as info:
        tiny(tmp_path, **{key: value})
    assert info.value.key == key
    assert supported in str(info.value) and "support" in str(info.value)


def test_absent_key_uses_galprop_default_and_is_checked(tmp_path: Path) -> None:
    with pytest.raises(GaldefError, match="cross_section_option = 9 \\(GALPROP's default"):
        tiny(tmp_path, cross_section_option=None)  # GALPROP's default 011 is C octal
    with pytest.raises(GaldefError, match="source_model = 0 \\(GALPROP's default"):
        tiny(tmp_path, source_model=None)
    assert tiny(tmp_path, total_cross_section=None)["total_cross_section"] == 1
    with pytest.raises(GaldefError, match="n_spatial_dimensions is missing"):
        tiny(tmp_path, n_spatial_dimensions=None)


def test_repeated_key_first_wins(tmp_path: Path) -> None:
    g = tiny(tmp_path, extra_lines=(line("D0_xx", "9e28"), line("diff_reacc", 1), line("diff_reacc", 11)))
    assert g["D0_xx"] == 3.25e28 and g["diff_reacc"] == 1  # a later unsupported value is never read
    assert sum("repeated" in w for w in g.warnings) == 2
    assert any("D0_xx repeated; GALPROP uses the first occurrence" in w for w in g.warnings)
    with pytest.raises(GaldefError, match="diff_reacc = 11"):  # the first occurrence is what counts
        tiny(tmp_path, extra_lines=(line("diff_reacc", 11), line("diff_reacc", 1)))


def test_values_galprop_would_misread_are_errors(tmp_path: Path) -> None:
    with pytest.raises(GaldefError, match="timestep_repeat.*not an integer"):
        tiny(tmp_path, timestep_repeat=2.5)
    with pytest.raises(GaldefError, match="dr: GALPROP reads the value from column 23"):
        parse_galdef(tiny_text(dr=None) + "dr = 0.5\n")
    with pytest.raises(GaldefError, match="does not recognise 'dr=0.5'"):
        parse_galdef(tiny_text(dr=None) + "dr=0.5              = 1\n")
    with pytest.raises(GaldefError, match="not followed by '='"):
        parse_galdef(tiny_text(dr=None) + "dr                     0.5\n")
    with pytest.raises(GaldefError, match="dz has no value"):
        parse_galdef(tiny_text(dz=None) + line("dz", "") + "\n")
    with pytest.raises(GaldefError, match="D0_xx = 'nan' is not a finite number"):
        tiny(tmp_path, D0_xx="nan")


def test_cross_key_checks(tmp_path: Path) -> None:
    with pytest.raises(GaldefError, match="use_Z_26 = 1.*Z <= 14"):
        tiny(tmp_path, max_Z=26, use_Z_26=1)
    with pytest.raises(GaldefError, match="r_min"):
        tiny(tmp_path, r_min=1.0)
    with pytest.raises(GaldefError, match="z_min"):
        tiny(tmp_path, z_min=4.0)
    with pytest.raises(GaldefError, match="nuc_rigid_br0 <= nuc_rigid_br"):
        tiny(tmp_path, nuc_rigid_br0=1e6)
    with pytest.raises(GaldefError, match="D_g_1"):
        tiny(tmp_path, D_g_1=2.5)
    with pytest.raises(GaldefError, match="no element selected"):
        tiny(tmp_path, use_Z_1=0, use_Z_6=0)
    # review of session 13: each of these was accepted
    with pytest.raises(GaldefError, match="the halo must enclose the disc"):
        tiny(tmp_path, z_min=0.5, z_max=9.0)
    with pytest.raises(GaldefError, match="max_Z.*1 .. 30"):
        tiny(tmp_path, max_Z=1_000_000)
    with pytest.raises(GaldefError, match="use_Z_06"):  # GALPROP reads use_Z_6 only: carbon would vanish silently
        tiny(tmp_path, use_Z_6=None, use_Z_06=1)
    from crprop.galaxy import GalaxySetup

    with pytest.raises(ValueError, match="symmetric about the disc"):
        GalaxySetup.from_galdef(tiny(tmp_path, z_min=-3.9, z_max=5.0))


def test_grid_ends_off_the_boundary_warn(tmp_path: Path) -> None:
    g = tiny(tmp_path, r_max=20.0, dr=3.0)
    assert any("(r_max - r_min) / dr = 6.66667 is not a whole number" in w for w in g.warnings)
    assert g.grid().n_r == 8  # GALPROP's int(20/3 + 1.5): nodes 0 .. 21 kpc
    assert not any("whole number" in w for w in tiny(tmp_path).warnings)  # 20/1 and 7.8/0.2 are whole


def test_ignored_species_switches_only_warn(tmp_path: Path) -> None:
    g = tiny(tmp_path, primary_electrons=1, gamma_rays=1, secondary_antiproton=1, long_min=3.0)
    joined = " ".join(g.warnings)
    assert "primary_electrons = 1 asks for primary electrons" in joined and "gamma_rays" in joined
    assert g["long_min"] == 3.0
    g = tiny(tmp_path, total_cross_section=3)
    assert any("Tripathi" in w for w in g.warnings)


def test_with_overrides(tmp_path: Path) -> None:
    g = tiny(tmp_path, extra_lines=(line("v_Alfven", 30.0, "Alfven speed in km s-1"),))
    g2 = g.with_overrides({"v_Alfven": 12.5}, D0_xx=4.0e28, diff_reacc=0, timestep_repeat=60,
                          cross_section_option=12)
    assert g["v_Alfven"] == 30.0 and g["D0_xx"] == 3.25e28  # original unchanged
    assert (g2["v_Alfven"], g2["D0_xx"], g2["diff_reacc"], g2["timestep_repeat"]) == (12.5, 4.0e28, 0, 60)
    replaced = g2.lines[g2.entries["v_Alfven"].line_index]
    assert replaced.index("=") == 21 and replaced.endswith("Alfven speed in km s-1")
    assert g2.entries["timestep_repeat"].line_index == len(g2.lines) - 1  # appended
    assert g2.raw("cross_section_option") == "012"
    assert len(g2.lines) == len(g.lines) + 2  # diff_reacc and timestep_repeat appended
    g3 = read_galdef(write_galdef(g2, tmp_path / "galdef_54_out"))
    assert g3.as_dict() == g2.as_dict()
    with pytest.raises(GaldefError, match="unknown galdef key 'D0'"):
        g.with_overrides(D0=1.0)
    with pytest.raises(GaldefError, match="diff_reacc"):
        g.with_overrides(diff_reacc=12)
    with pytest.raises(GaldefError, match="expected an integer"):
        g.with_overrides(diff_reacc=True)
    with pytest.raises(GaldefError, match="whitespace"):
        g.with_overrides(B_field_name="two words")


def test_total_cross_section_models_match_the_nuclear_module() -> None:
    from crprop.nuclear import inelastic

    assert set(TOTAL_CROSS_SECTION_MODELS.values()) <= set(inelastic.INELASTIC_MODELS)
    for model, option in inelastic.GALPROP_TOTAL_CS_OPTION.items():
        assert TOTAL_CROSS_SECTION_MODELS[option] == model


def test_typed_attribute_access(tmp_path: Path) -> None:
    g = tiny(tmp_path)
    assert g.Ekin_factor == 1.25 and g.iso_abundance_06_012 == 3600.0 and g.use_Z_2 == 0
    with pytest.raises(AttributeError):
        _ = g.not_a_key
    with pytest.raises(KeyError, match="unknown galdef key"):
        _ = g["not_a_key"]
    assert "D0_xx" in g and "v_Alfven" not in g and g.get("Title") == "tiny test galdef"


def test_pickle_and_missing_file(tmp_path: Path) -> None:
    import pickle

    g = tiny(tmp_path, extra_lines=(line("D0_xx", "9e28"),))
    back = pickle.loads(pickle.dumps(g))
    assert back == g and hash(back) == hash(g) and back.warnings == g.warnings
    with pytest.raises(TypeError):
        g.entries["D0_xx"] = None  # type: ignore[index]
    with pytest.raises(GaldefError, match="cannot read galdef"):
        read_galdef(tmp_path / "galdef_54_absent")


def test_convection_is_refused_not_ignored():
    """crprop has no convection yet: a galdef asking for it must fail, naming the key (GALPROP would run it)."""
    from crprop.galaxy import paper_galdef_path
    from crprop.galprop.galdef import GaldefError, read_galdef

    with pytest.raises(GaldefError, match="convection"):
        read_galdef(paper_galdef_path()).with_overrides(convection=1)
