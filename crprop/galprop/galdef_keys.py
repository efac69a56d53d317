"""Registry of every galdef key GALPROP v54 reads for a nuclei run, classified for crprop.

Source of the key list: ``Galdef::read`` in GALPROP v54 (``ellisowen/galprop`` commit a36c795, the
code behind every run in ``reference/galprop``), plus the two keys its patched build also reads
(``nuc_g_0``, whose read is missing from the stock file, and ``eta_beta``). Defaults are those of
``AssignDefaultParameters`` / ``Galdef::read`` (what GALPROP uses when a key is absent).

Every key has one of three classes (:class:`KeyClass`):

* ``IMPLEMENTED`` - physics crprop reproduces. Values outside the supported set raise a
  :class:`GaldefError` naming the key and what is supported (e.g. ``n_spatial_dimensions = 3``,
  ``diff_reacc = 11``, ``solution_method = 2``).
* ``UNSUPPORTED`` - physics crprop does not implement. Accepted only at the value that switches it off
  (e.g. ``SNR_events = 0``, ``Diffusion_aniso = 0``); anything else raises a :class:`GaldefError`.
* ``IGNORED`` - output-only keys, and keys that have no effect on nuclei in a 2D run (gamma-ray and
  synchrotron maps, ISRF, gas-survey files, 3D x/y grids, electron/positron injection, dark matter, ...).
  Accepted and kept verbatim. Switching on a species or output crprop does not produce is recorded as a
  warning (GALPROP v54 computes nuclei first and nothing feeds back into them).

A few keys in the CR-ML galdef are not read by GALPROP v54 at all (``Title``, ``comment``, ``sdp_*``,
``E_nu_*``, ``pion_nu``, ``electron_rigid_cut``, ``positron_norm_*``); they are registered as ``IGNORED`` with
``read_by_galprop=False``. Any other key is unknown and rejected (GALPROP silently ignores unknown keys).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class GaldefError(ValueError):
    """A galdef is malformed, or asks for something crprop does not reproduce.

    ``key`` is the offending galdef key (``None`` for file-level problems).
    """

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class KeyClass(StrEnum):
    """How crprop treats a galdef key (see module docstring)."""

    IMPLEMENTED = "implemented"
    UNSUPPORTED = "unsupported"
    IGNORED = "ignored"


Check = Callable[[Any], "str | None"]
"""A value check: returns None when fine, else a phrase describing what is supported."""


@dataclass(frozen=True)
class Derived:
    """A GALPROP default that depends on other keys; ``fn(get)`` with ``get(key) -> effective value``."""

    fn: Callable[[Callable[[str], Any]], Any]
    text: str


@dataclass(frozen=True)
class KeySpec:
    """One galdef key.

    vtype: ``int`` (C ``%d``), ``float`` (``%le``), ``str`` (first token), ``floats`` (comma-separated
    ``%le`` list) or ``text`` (the whole rest of the line; keys GALPROP does not read).
    default: GALPROP's value when the key is absent (``None``: no default, or a :class:`Derived`).
    allowed: the supported values (IMPLEMENTED / UNSUPPORTED keys), ``None`` = any value passing ``check``.
    note_if_set: for IGNORED keys, returns a warning when an explicitly set value asks for something
    crprop does not produce.
    """

    name: str
    vtype: str
    klass: KeyClass
    default: Any
    doc: str
    allowed: tuple[Any, ...] | None = None
    check: Check | None = None
    read_by_galprop: bool = True
    galprop_required: bool = False
    note_if_set: Check | None = None


# ----------------------------------------------------------------------------------------- checks
def _positive(v: float) -> str | None:
    return None if math.isfinite(v) and v > 0 else "a finite value > 0"


def _nonneg(v: float) -> str | None:
    return None if math.isfinite(v) and v >= 0 else "a finite value >= 0"


def _finite(v: float) -> str | None:
    return None if math.isfinite(v) else "a finite value"


def _at_least(lo: int) -> Check:
    return lambda v: None if v >= lo else f"an integer >= {lo}"


def _open_interval(lo: float, hi: float) -> Check:
    return lambda v: None if math.isfinite(v) and lo < v < hi else f"a value in ({lo}, {hi})"


def _note_on(what: str) -> Check:
    return lambda v: None if v == 0 else f"asks for {what}, which crprop does not compute (nuclei unaffected)"


def default_network_iter_compl(network_iterations: int) -> int:
    """GALPROP v54's default number of complete network passes (galdef ``network_iter_compl`` unset):
    min(network_iterations, 2). The one rule for galdef reading and :class:`crprop.galaxy.GalaxySetup`."""
    return min(int(network_iterations), 2)


_I, _U, _G = KeyClass.IMPLEMENTED, KeyClass.UNSUPPORTED, KeyClass.IGNORED
_SPECS: dict[str, KeySpec] = {}


def _add(name: str, vtype: str, klass: KeyClass, default: Any, doc: str, **kw: Any) -> None:
    if name in _SPECS:
        raise RuntimeError(f"duplicate registry key {name}")
    _SPECS[name] = KeySpec(name, vtype, klass, default, doc, **kw)


# ------------------------------------------------------------------- (a) physics crprop implements
_add("n_spatial_dimensions", "int", _I, None, "2 = axisymmetric (r, z) model", allowed=(2,),
     galprop_required=True)
_add("r_min", "float", _I, 0.0, "inner radius, kpc (the grid starts on the axis)",
     check=lambda v: None if v == 0.0 else "0 (crprop grids start on the axis r = 0)")
_add("r_max", "float", _I, 20.0, "halo radius R_h, kpc (psi = 0 there)", check=_positive)
_add("dr", "float", _I, 1.0, "radial step, kpc", check=_positive)
_add("z_min", "float", _I, -4.0, "lower halo boundary, kpc (= -z_h)", check=_finite)
_add("z_max", "float", _I, 4.0, "upper halo boundary, kpc (= +z_h)", check=_finite)
_add("dz", "float", _I, 0.2, "vertical step, kpc", check=_positive)
_add("Ekin_min", "float", _I, 1.0e1, "lowest kinetic energy per nucleon, MeV/n", check=_positive)
_add("Ekin_max", "float", _I, 1.0e8, "highest kinetic energy per nucleon, MeV/n", check=_positive)
_add("Ekin_factor", "float", _I, 1.4, "Ekin/n grid ratio", check=lambda v: None if v > 1 else "a value > 1")
_add("p_Ekin_grid", "str", _I, "Ekin", "grid aligned on Ekin/n ('Ekin') or momentum ('p')", allowed=("Ekin",))
_add("D0_xx", "float", _I, 5.75e28, "diffusion coefficient at D_rigid_br, cm^2/s", check=_positive)
_add("D_rigid_br", "float", _I, 4.0e3, "reference rigidity of D0_xx, MV", check=_positive)
_add("D_g_1", "float", _I, 0.34, "diffusion rigidity index below D_rigid_br", check=_finite)
_add("D_g_2", "float", _I, 0.34, "diffusion rigidity index above D_rigid_br", check=_finite)
_add("eta_beta", "float", _I, 1.0, "velocity power eta of D_xx = D0 beta^eta (R/R_br)^delta (patched v54)",
     check=_finite)
_add("diff_reacc", "int", _I, 1, "0 = no reacceleration, 1 = Seo & Ptuskin D_pp", allowed=(0, 1))
_add("v_Alfven", "float", _I, 36.0, "Alfven speed, km/s", check=_nonneg)
_add("convection", "int", _I, 0, "0 = off (crprop does not implement GALPROP's convection = 1, V(z) = "
     "v0_conv + dvdz_conv |z|, yet: its operator keeps room for it, but a run asking for it is refused)",
     allowed=(0,))
_add("v0_conv", "float", _I, 0.0, "convection speed at z = 0, km/s", check=_finite)
_add("dvdz_conv", "float", _I, 10.0, "convection gradient, km/s/kpc", check=_finite)
_add("nuc_g_0", "float", _I, 1.50, "injection index below nuc_rigid_br0 (patched v54 reads it)",
     check=_finite)
_add("nuc_rigid_br0", "float", _I, 1.0e0, "first injection break, MV", check=_positive)
_add("nuc_g_1", "float", _I, 1.82, "injection index between nuc_rigid_br0 and nuc_rigid_br", check=_finite)
_add("nuc_rigid_br", "float", _I, 9.0e3, "second injection break, MV", check=_positive)
_add("nuc_g_2", "float", _I, 2.36, "injection index between nuc_rigid_br and nuc_rigid_br2", check=_finite)
_add("nuc_rigid_br2", "float", _I, 1.0e8, "third injection break, MV", check=_positive)
_add("nuc_g_3", "float", _I, 3.00, "injection index above nuc_rigid_br2", check=_finite)
_add("inj_spectrum_type", "str", _I, "rigidity", "nucleon injection spectrum in rigidity",
     allowed=("rigidity",))
_add("source_norm", "float", _I, 1.0, "global source factor (cancels in the proton normalisation)",
     check=_positive)
_add("He_H_ratio", "float", _I, 0.11, "He/H of the ISM by number", check=_nonneg)
_add("X_CO", "float", _I, 1.9e20, "CO-to-H2 factor, molecules cm^-2 (K km/s)^-1", check=_positive)
for _k in ("nHI_model", "nH2_model", "nHII_model"):
    _add(_k, "int", _I, 1, "analytic 2D gas model", allowed=(1,))
for _k in ("fragmentation", "momentum_losses", "radioactive_decay", "K_capture"):
    _add(_k, "int", _I, 1, "1 = include the process", allowed=(0, 1))
_add("solution_method", "int", _I, 1, "1 = Crank-Nicolson operator splitting (propel.cc)", allowed=(1,))
_add("solution_convergence", "int", _I, 0, "0 = run the full time-step ladder", allowed=(0,))
_add("start_timestep", "float", _I, 1.0e9, "first time step, yr", check=_positive)
_add("end_timestep", "float", _I, 1.0e2, "last time step, yr", check=_positive)
_add("timestep_factor", "float", _I, 0.25, "time-step ratio between levels", check=_open_interval(0.0, 1.0))
_add("timestep_repeat", "int", _I, 20, "steps per time-step level", check=_at_least(1))
_add("timestep_repeat2", "int", _I, 0, "steps of timestep mode 2 (unused by solution_method 1)",
     check=_at_least(0))
_add("network_iterations", "int", _I, 1, "passes over the species network", check=_at_least(1))
_add("network_iter_compl", "int", _I, Derived(lambda get: default_network_iter_compl(get("network_iterations")),
     "min(network_iterations, 2)"), "passes that propagate every species", check=_at_least(1))
_add("network_iter_sec", "int", _I, Derived(lambda get: min(get("network_iterations"), 1),
     "min(network_iterations, 1)"), "passes that regenerate secondary sources", check=_at_least(0))
_add("spatial_bound_conds", "int", _I, 1, "1 = psi = 0 on r = r_max and z = z_min, z_max", allowed=(1,))
_add("max_Z", "int", _I, 2, "heaviest element in the network",
     check=lambda v: None if 1 <= v <= 30 else "an integer in 1 .. 30 (GALPROP's element tables end at Zn)")
TOTAL_CROSS_SECTION_TRIPATHI = 3
TOTAL_CROSS_SECTION_MODELS: Mapping[int, str] = {
    0: "letaw", 1: "wellisch_axen", 2: "barashenkov_polanski", TOTAL_CROSS_SECTION_TRIPATHI: "tripathi99",
}
"""total_cross_section value -> crprop.nuclear.inelastic model name (3 is crprop's extension)."""
_add("total_cross_section", "int", _I, 1, "inelastic cross sections: 0 = Letaw 83, 1 = Wellisch-Axen 96 "
     "(Z > 5, else BP01), 2 = Barashenkov-Polanski (BP01); 3 = crprop's Tripathi et al. option "
     "(GALPROP v54 itself treats any value other than 0, 1 as BP01)",
     allowed=tuple(TOTAL_CROSS_SECTION_MODELS))
_add("cross_section_option", "int", _I, 9, "100*i + j: isotopic production cross sections "
     "(012 = GALPROP evaluated fits; the default 011 is C octal, i.e. 9)", allowed=(12,))
_add("t_half_limit", "float", _I, 1.0e4, "half-life below which decays are instantaneous, yr",
     check=_positive)
_add("source_model", "int", _I, 0, "1 = parameterised source distribution", allowed=(1,))
_add("proton_norm_Ekin", "float", _I, 1.0e5, "proton normalisation energy, MeV", check=_positive)
_add("proton_norm_flux", "float", _I, 4.90e-9, "proton flux at proton_norm_Ekin, cm^-2 s^-1 sr^-1 MeV^-1",
     check=_positive)

# ----------------------------------------------------- (b) physics crprop does not implement (off only)
_add("Diffusion_aniso", "int", _U, 0, "anisotropic diffusion D_zz != D_xx", allowed=(0,))
_add("rigid_min", "float", _U, 0.0, "a low-rigidity injection cut-off (MV)",
     check=lambda v: None if v <= 0 else "a value <= 0 (no injection cut-off)")
_add("rigid_max", "float", _U, 1.0e100, "a high-rigidity injection cut-off (MV)",
     check=lambda v: None if v >= 1e30 else "a value >= 1e30 MV (no injection cut-off)")
_add("n_X_CO", "int", _U, 0, "radially varying X_CO(R)", allowed=(0,))
_add("propagation_X_CO", "int", _U, 0, "alternative H2 from CO for propagation", allowed=(0,))
for _k in ("prop_r", "prop_z", "prop_p"):
    _add(_k, "int", _U, 1, "switching off transport in one direction", allowed=(1,))
_add("source_specification", "int", _U, 0, "point / plane-only sources", allowed=(0,))
_add("SNR_events", "int", _U, 0, "stochastic SNR sources", allowed=(0,))
_add("secondary_protons", "int", _U, 0, "secondary protons (they add to the proton flux)", allowed=(0,))
_add("warm_start", "int", _U, 0, "continuing from a previous nuclei file", allowed=(0,))
_add("test_suite", "int", _U, 0, "GALPROP's test suite instead of a run", allowed=(0,))
DM_TEST_MODE = 99
"""|DM_int0| that switches GALPROP v54 into its analytic propagation test (a test run, not a model of the Galaxy)."""
# other DM_int0 values only pick a dark-matter profile, which does not touch nuclei (accepted, as DM_int1 .. 9)
_add("DM_int0", "int", _U, 0, f"GALPROP's analytic propagation test of |DM_int0| = {DM_TEST_MODE} (it forces max_Z = 1 "
     "and diff_reacc = 0, a slab source of half-height DM_double6 and its own D_xx, whatever the rest of the galdef "
     "says)",
     check=lambda v: None if abs(v) != DM_TEST_MODE else f"any value other than {DM_TEST_MODE} or -{DM_TEST_MODE}")

# ------------------------------------------------ (c) output-only / irrelevant for nuclei (accepted)
_IGNORED_PLAIN: tuple[tuple[str, str, Any, str], ...] = (
    ("verbose", "int", 0, "GALPROP log level"),
    ("electron_source_norm", "float", 1.0, "electron source factor"),
    ("positron_source_norm", "float", 1.0, "positron source factor"),
    ("x_min", "float", -15.0, "3D grid, kpc"), ("x_max", "float", 15.0, "3D grid, kpc"),
    ("dx", "float", 1.0, "3D grid, kpc"), ("y_min", "float", -15.0, "3D grid, kpc"),
    ("y_max", "float", 15.0, "3D grid, kpc"), ("dy", "float", 1.0, "3D grid, kpc"),
    ("p_min", "float", 10.0, "momentum grid (p_Ekin_grid = p only), MV"),
    ("p_max", "float", 1.0e5, "momentum grid (p_Ekin_grid = p only), MV"),
    ("p_factor", "float", 1.3, "momentum grid ratio (p_Ekin_grid = p only)"),
    ("E_gamma_min", "float", 1.0e1, "gamma rays, MeV"), ("E_gamma_max", "float", 1.0e6, "gamma rays, MeV"),
    ("E_gamma_factor", "float", 1.0e1, "gamma-ray grid ratio"),
    ("integration_mode", "int", 1, "gamma-ray integration mode"),
    ("nu_synch_min", "float", 1.0e6, "synchrotron, Hz"), ("nu_synch_max", "float", 1.0e10, "synchrotron, Hz"),
    ("nu_synch_factor", "float", 2.0, "synchrotron grid ratio"),
    ("long_min", "float", 0.0, "skymap, deg"), ("long_max", "float", 360.0, "skymap, deg"),
    ("lat_min", "float", -90.0, "skymap, deg"), ("lat_max", "float", 90.0, "skymap, deg"),
    ("d_long", "float", 0.5, "skymap, deg"), ("d_lat", "float", 0.5, "skymap, deg"),
    ("healpix_order", "int", 0, "skymap HEALPix order"), ("lat_substep_number", "int", 1, "skymap"),
    ("LoS_step", "float", 0.01, "line-of-sight step, kpc"), ("LoS_substep_number", "int", 1, "line of sight"),
    ("D0_zz", "float", 5.75e27, "D_zz, cm^2/s (Diffusion_aniso = 1 only)"),
    ("damping_p0", "float", 1.0e6, "wave damping (diff_reacc 11/12 only), MV"),
    ("damping_max_path_L", "float", 3.0e21, "wave damping (diff_reacc 11/12 only), cm"),
    ("damping_const_G", "float", 0.02, "wave damping (diff_reacc 11/12 only)"),
    ("z0_conv", "float", 1.0, "convection 2/3 only, kpc"),
    ("electron_g_0", "float", 1.60, "electrons"), ("electron_rigid_br0", "float", 4.0e3, "electrons, MV"),
    ("electron_g_1", "float", 2.50, "electrons"), ("electron_rigid_br", "float", 1.0e9, "electrons, MV"),
    ("electron_g_2", "float", 5.0, "electrons"), ("electron_rigid_br2", "float", 2.0e9, "electrons, MV"),
    ("electron_g_3", "float", 6.0, "electron injection"),
    ("positron_g_0", "float", 1.60, "positrons"), ("positron_rigid_br0", "float", 4.0e3, "positrons, MV"),
    ("positron_g_1", "float", 2.50, "positrons"), ("positron_rigid_br", "float", 1.0e9, "positrons, MV"),
    ("positron_g_2", "float", 5.0, "positrons"), ("positron_rigid_br2", "float", 3.0e9, "positrons, MV"),
    ("positron_g_3", "float", 7.0, "positron injection"),
    ("n_X_CO_values", "int", 0, "tabulated X_CO(R) (n_X_CO != 0 only)"),
    ("X_CO_values", "floats", None, "tabulated X_CO(R) (n_X_CO != 0 only)"),
    ("X_CO_radius", "floats", None, "tabulated X_CO(R) radii, kpc (n_X_CO != 0 only)"),
    ("renorm_off", "int", 0, "gamma-ray emissivity option"), ("uniform_emiss", "int", 0, "gamma-ray option"),
    ("single_component", "int", 0, "gamma-ray emissivity option"),
    ("COCube_filename", "str", " ", "3D CO gas cube"), ("COCube_rlb_filename", "str", " ", "3D CO gas cube"),
    ("HICube_filename", "str", " ", "3D HI gas cube"), ("HICube_rlb_filename", "str", " ", "3D HI gas cube"),
    ("GCR_data_filename", "str", "GCR_data_1.dat", "CR data for GALPROP's chi^2"),
    ("timestep_print", "int", 10000, "log interval"), ("timestep_diagnostics", "int", 10000, "diagnostics"),
    ("control_diagnostics", "int", 0, "diagnostics detail"),
    ("prop_x", "int", 1, "3D only"), ("prop_y", "int", 1, "3D only"), ("use_symmetry", "int", 0, "3D only"),
    ("vectorized", "int", 0, "GALPROP implementation detail"),
    ("IC_isotropic", "int", 1, "inverse Compton maps"),
    ("IC_anisotropic", "int", 0, "inverse Compton maps"), ("bremss", "int", 1, "bremsstrahlung maps"),
    ("free_free_absorption", "int", 1, "synchrotron absorption"),
    ("spiral_fraction", "float", 0.0, "3D only"), ("kennicutt_index", "float", 1.0, "3D only"),
    ("kennicutt_threshold", "float", 0.0, "3D only"),
    ("n_source_values", "int", 0, "source_model 8 only"), ("source_values", "floats", None, "source_model 8"),
    ("source_radius", "floats", None, "source_model 8 only, kpc"), ("n_cr_sources", "int", 0, "3D only"),
    ("SNR_interval", "float", 0.0, "SNR_events only, yr"), ("SNR_livetime", "float", 0.0, "SNR only, yr"),
    ("SNR_electron_sdg", "float", 0.0, "SNR_events only"), ("SNR_nuc_sdg", "float", 0.0, "SNR_events only"),
    ("SNR_electron_dgpivot", "float", 0.0, "SNR_events only, MV"),
    ("SNR_nuc_dgpivot", "float", 0.0, "SNR_events only, MV"),
    ("B_field_model", "int", 50100020, "B(R, z) for synchrotron / electron losses"),
    ("B_field_name", "str", "galprop_original", "3D B-field model"),
    ("B_field_parameters", "floats", tuple(float(-i - 1) for i in range(10)), "3D B-field model parameters"),
    ("HII_Te", "float", 7000.0, "free-free absorption, K"),
    ("HII_clumping_factor", "float", 100.0, "free-free absorption"),
    ("electron_norm_Ekin", "float", 34.5e3, "electron normalisation, MeV"),
    ("electron_norm_flux", "float", 0.40e-9, "electron normalisation"),
    ("skymap_format", "int", 0, "FITS skymap format"), ("output_gcr_full", "int", 0, "write nuclei_full"),
)
for _name, _vt, _d, _doc in _IGNORED_PLAIN:
    _add(_name, _vt, _G, _d, _doc)
for _name, _d, _doc in (("COR_filename", " ", "CO rings for gamma-ray maps"),
                        ("HIR_filename", " ", "HI rings for gamma-ray maps"),
                        ("ISRF_file", " ", "interstellar radiation field")):
    _add(_name, "str", _G, _d, _doc, galprop_required=True)
_add("pi0_decay", "int", _G, 1, "pi0 gamma-ray formalism (GALPROP v54 exits when the key is absent)",
     galprop_required=True)
_add("ISRF_filetype", "int", _G, 0, "ISRF file type", galprop_required=True,
     check=lambda v: None if v != 1 else "a value other than 1 (it stops on ISRF_filetype = 1)")
_add("ISRF_healpixOrder", "int", _G, 0, "ISRF skymap order", galprop_required=True)
_add("ISRF_factors", "floats", _G, None, "ISRF factors (optical, FIR, CMB)", galprop_required=True)
_add("n_B_field_parameters", "int", _G, 10, "number of B-field parameters",
     check=lambda v: None if v == 10 else "10 (GALPROP v54 stops otherwise)")
_add("ionization_rate", "int", _G, 0, "CR ionisation rate", note_if_set=_note_on("the ionisation rate"))
for _k, _what in (("primary_electrons", "primary electrons"), ("primary_positrons", "primary positrons"),
                  ("secondary_positrons", "secondary positrons"),
                  ("secondary_electrons", "secondary electrons"),
                  ("knock_on_electrons", "knock-on electrons"), ("secondary_antiproton", "antiprotons"),
                  ("tertiary_antiproton", "tertiary antiprotons"), ("gamma_rays", "gamma-ray emission"),
                  ("synchrotron", "synchrotron emission"), ("DM_positrons", "dark-matter positrons"),
                  ("DM_electrons", "dark-matter electrons"), ("DM_antiprotons", "dark-matter antiprotons"),
                  ("DM_antideuterons", "dark-matter antideuterons"),
                  ("DM_antihelium", "dark-matter antihelium"),
                  ("DM_gammas", "dark-matter gamma rays")):
    _add(_k, "int", _G, 1 if _k in ("primary_electrons", "synchrotron") else 0, f"switch for {_what}",
         note_if_set=_note_on(_what))
_add("source_model_elec", "int", _G, Derived(lambda get: get("source_model"), "source_model"),
     "electron source distribution")
_add("source_model_posi", "int", _G, Derived(lambda get: get("source_model"), "source_model"),
     "positron source distribution")

# ------------------------------------- (c') present in the CR-ML galdef, but not read by GALPROP v54
for _name, _vt, _doc in (("Title", "text", "run title"), ("comment", "text", "free comment"),
                         ("sdp_D0", "float", "not used by v54"), ("sdp_delta", "float", "not used by v54"),
                         ("sdp_zc", "float", "not used by v54"),
                         ("E_nu_min", "float", "neutrino grid, MeV (not read by v54)"),
                         ("E_nu_max", "float", "neutrino grid, MeV (not read by v54)"),
                         ("E_nu_factor", "float", "neutrino grid ratio (not read by v54)"),
                         ("pion_nu", "int", "neutrinos from pions (not read by v54)"),
                         ("electron_rigid_cut", "float", "electron cut-off, MV (not used by v54)"),
                         ("positron_norm_Ekin", "float", "not read by v54 (fixed 35.5e3 MeV)"),
                         ("positron_norm_flux", "float", "not read by v54 (fixed 0.5e-9)")):
    _add(_name, _vt, _G, None, _doc, read_by_galprop=False)

REGISTRY: Mapping[str, KeySpec] = _SPECS
"""Every fixed-name key, by name."""

_SRC_DEFAULTS = (0.2, 0.0, 0.0, 0.0, 100.0, 0.0, 0.0, 0.0, 0.0, 0.0)
_SRC_DOCS = ("z scale height, kpc", "alpha (r^alpha)", "beta (exp(-beta (r - r_sun)/r_sun))",
             "source r_max, kpc", "r_const, kpc", "r_off, kpc", "unused", "unused", "unused", "unused")


def _family(key: str) -> KeySpec | None:
    m = re.fullmatch(r"use_Z_([1-9][0-9]*)", key)  # GALPROP builds the name with "use_Z_%d": no leading zero
    if m:
        return KeySpec(key, "int", _I, 0, f"1 = include element Z = {int(m.group(1))}", allowed=(0, 1))
    m = re.fullmatch(r"iso_abundance_([0-9]{2})_([0-9]{3})", key)
    if m:
        return KeySpec(key, "float", _I, 0.0, f"source abundance of (Z, A) = ({int(m.group(1))}, "
                       f"{int(m.group(2))}) relative to 1H = 1.06e6", check=_nonneg)
    m = re.fullmatch(r"source_parameters_([0-9])", key)
    if m:
        i = int(m.group(1))
        return KeySpec(key, "float", _I, _SRC_DEFAULTS[i], f"source distribution: {_SRC_DOCS[i]}",
                       check=_finite)
    m = re.fullmatch(r"source_pars_elec_([0-9])", key)
    if m:
        name = f"source_parameters_{m.group(1)}"
        return KeySpec(key, "float", _G, Derived(lambda get: get(name), name), "electron source distribution")
    m = re.fullmatch(r"source_pars_posi_([0-9])", key)
    if m:
        return KeySpec(key, "float", _G, _SRC_DEFAULTS[int(m.group(1))], "positron source distribution")
    if re.fullmatch(r"X_CO_parameters_[0-3]", key):
        return KeySpec(key, "float", _G, 1.9e20 if key.endswith("_0") else 0.0, "X_CO(R) (n_X_CO = 2 only)")
    if re.fullmatch(r"cr_source_[xyzwL]_[0-9]{2}", key):
        return KeySpec(key, "float", _G, 0.0, "3D point source (n_cr_sources > 0 only)")
    if re.fullmatch(r"DM_double[0-9]", key):
        return KeySpec(key, "float", _G, 0.0, "dark-matter parameter")
    if re.fullmatch(r"DM_int[0-9]", key):
        return KeySpec(key, "int", _G, 0, "dark-matter parameter")
    return None


def key_spec(key: str) -> KeySpec | None:
    """The :class:`KeySpec` of ``key`` (fixed name or pattern family), or None if crprop does not know it."""
    spec = _SPECS.get(key)
    return spec if spec is not None else _family(key)


FAMILY_PATTERNS: tuple[str, ...] = (
    "use_Z_<Z>", "iso_abundance_<ZZ>_<AAA>", "source_parameters_<0-9>", "source_pars_elec_<0-9>",
    "source_pars_posi_<0-9>", "X_CO_parameters_<0-3>", "cr_source_<x|y|z|w|L>_<NN>", "DM_double<0-9>",
    "DM_int<0-9>",
)
"""Key families read by GALPROP in loops (listed for documentation)."""
