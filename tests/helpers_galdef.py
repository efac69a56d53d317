"""Tiny synthetic galdefs (GALPROP v54 layout) and the reference run names, shared by the galdef and params tests."""

from __future__ import annotations

from pathlib import Path

from crprop.galprop.galdef import Galdef, read_galdef

RUNS = (
    "crml_base", "crml_base_efine", "crml_base_net2", "crml_base_split", "crml_base_tconv",
    "crml_base_tconv1000", "crml_base_tconvsplit", "crml_base_tfine", "crml_base_xfine",
    "p1", "p1_tconv", "p2", "p2_tconv", "p4", "p6",
)


def line(key: str, value: object, comment: str = "") -> str:
    """A galdef line with '=' in GALPROP's column 22."""
    return f"{key:<20} = {value}" + (f"   {comment}" if comment else "")


BASE = {
    "n_spatial_dimensions": 2, "r_min": 0.0, "r_max": 20.0, "dr": 1.0, "z_min": -3.9, "z_max": 3.9, "dz": 0.2,
    "Ekin_min": 1.0, "Ekin_max": 1.0e8, "Ekin_factor": 1.25, "D0_xx": "3.25e28", "D_g_1": 0.478,
    "D_g_2": 0.478, "nuc_g_0": 0.28, "nuc_rigid_br0": 880.0, "nuc_g_1": 2.42, "nuc_rigid_br": 4.67e5,
    "nuc_g_2": 2.12, "nuc_rigid_br2": 1.0e12, "nuc_g_3": 2.12, "total_cross_section": 2,
    "cross_section_option": "012", "source_model": 1,
    "max_Z": 6, "use_Z_1": 1, "use_Z_6": 1, "iso_abundance_01_001": "1.06e6", "iso_abundance_06_012": 3600,
}
HEADER = ["1234567890123456789012", "======================value", line("Title", "tiny test galdef")]


def tiny_text(**overrides: object) -> str:
    values = {**BASE, **overrides}
    body = [line(k, v) for k, v in values.items() if v is not None]
    return "\n".join(HEADER + body) + "\n"


def tiny(tmp_path: Path, extra_lines: tuple[str, ...] = (), **overrides: object) -> Galdef:
    path = tmp_path / "galdef_54_tiny"
    path.write_text(tiny_text(**overrides) + "".join(x + "\n" for x in extra_lines))
    return read_galdef(path)
