"""The grid options shared by every command that propagates (fit, scan, feedback, evaluate): one definition each.

A re-simulation (feedback, evaluate) must use the scan's grid, so these take the same values as the scan's call.
"""

from __future__ import annotations

from typing import Annotated

import typer

DrOption = Annotated[float | None, typer.Option(
    "--dr", help="Radial grid step, kpc (default: the paper galdef; re-simulations: the scan's).")]
DzOption = Annotated[float | None, typer.Option(
    "--dz", help="Vertical grid step (near the disc with --z-uniform-half), kpc (default: the paper galdef).")]
EkinFactorOption = Annotated[float | None, typer.Option(
    "--ekin-factor", help="Energy grid factor: ratio of neighbouring kinetic energies per nucleon.")]
ZUniformHalfOption = Annotated[float | None, typer.Option(
    "--z-uniform-half", help="Stretched halo: uniform z steps up to this |z| (kpc), wider beyond "
    "(crprop GalaxySetup.z_uniform_half_kpc); default GALPROP's uniform grid.")]
ZStretchFactorOption = Annotated[float | None, typer.Option(
    "--z-stretch-factor", help="Stretched halo: ratio of neighbouring z steps beyond --z-uniform-half (default 1.15).")]
DzMaxOption = Annotated[float | None, typer.Option(
    "--dz-max", help="Stretched halo: largest z step, kpc, >= --dz (default 1.0).")]
