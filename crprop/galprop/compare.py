"""Compare crprop with a GALPROP run: a run directory holds the galdef and GALPROP's output.

Output accepted: the reference-run npz layout of ../shared/reference/galprop (``<run>.npz`` with
``Ekin_MeV_per_n``, ``r_kpc``, ``z_kpc`` (kpc), ``iso_Z``, ``iso_A``, ``iso_flux_LIS`` in
cm^-2 s^-1 sr^-1 (MeV/n)^-1, the Sun at r = 8.5 kpc and z = mean of the +-dz/2 nodes), or GALPROP's
own nuclei FITS file (``nuclei_full_54_*`` / ``nuclei_54_*``, read with crprop.galprop.fits and taken
at the same solar position; its electrons, positrons and antiprotons are left out).
Output on another energy, r or z grid than the galdef's is refused (it is another run's).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from crprop.constants import FLUX_CGS_MEV_TO_SI_GEV, R_SUN_KPC, Z_SUN_KPC
from crprop.galaxy import GalaxySetup
from crprop.galprop.galdef import Galdef, read_galdef
from crprop.grid import Grid
from crprop.params import PropagationParams, params_from_galdef
from crprop.spectra import Spectra

COMPARE_EMIN_GEV = 0.1
COMPARE_EMAX_GEV = 1000.0
"""Energy window of the comparison, GeV/n (the issue's 0.1 - 1000 GeV/n)."""

GRID_NODE_TOL_STEPS = 1e-3
"""Largest distance, in units of the galdef's step (dr or dz), of an output r or z node from the galdef's node for the
output to count as on the galdef's grid. The node values carry only round-off (decimal steps such as 0.2 kpc summed in
binary, FITS CRVAL + i CDELT header values): the reference npz runs' nodes equal the galdef's exactly (session 22);
output of another grid is off by a sizeable part of a step somewhere (dz = 0.2 -> 0.2002 kpc moves the 40th node
by 0.04 step)."""


@dataclass
class GalpropRun:
    """A GALPROP run: its galdef, the parameters it encodes and its solar fluxes (SI units)."""

    name: str
    galdef: Galdef
    params: PropagationParams
    ekin_gev_per_n: np.ndarray
    iso_z: np.ndarray
    iso_a: np.ndarray
    iso_flux_si: np.ndarray  # (n_iso, n_E), m^-2 s^-1 sr^-1 (GeV/n)^-1
    meta: dict = field(default_factory=dict)

    def spectra(self) -> Spectra:
        """GALPROP's fluxes as a one-model Spectra."""
        return Spectra(self.ekin_gev_per_n, self.iso_z, self.iso_a, self.iso_flux_si[None], [True], [0.0],
                       meta={"source": f"GALPROP run {self.name}"})

    def setup(self, order: str | None = None) -> GalaxySetup:
        return GalaxySetup.from_galdef(self.galdef, order=order)


def _find_galdef(run_dir: Path) -> Path:
    cands = sorted(run_dir.glob("galdef_*"))
    if len(cands) != 1:
        raise ValueError(f"{run_dir}: expected exactly one galdef_* file, found {[c.name for c in cands]}")
    return cands[0]


def load_run(run_dir: str | Path) -> GalpropRun:
    """Read a GALPROP run directory (galdef + npz or FITS output). The parameters are the galdef's, what GALPROP
    ran, not the json's nominal ``physical_parameters`` (:meth:`PropagationParams.from_galprop_json`), which
    differ for crml_base_xfine (halo 3.95 kpc in the galdef, 3.9 kpc in the json)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory")
    npz = run_dir / f"{run_dir.name}.npz"
    fits_files = sorted(run_dir.glob("nuclei_full_54_*")) + sorted(run_dir.glob("nuclei_54_*"))
    if not npz.exists() and not fits_files:  # before the galdef: a directory of galdefs only is no run to compare
        raise ValueError(f"{run_dir}: no GALPROP output ({npz.name} or nuclei_full_54_* / nuclei_54_* FITS)")
    galdef = read_galdef(_find_galdef(run_dir))
    params = params_from_galdef(galdef, check_prior=False)
    energies = galdef.grid().ekin_mev_per_n()
    if npz.exists():
        wanted = ("Ekin_MeV_per_n", "r_kpc", "z_kpc", "iso_Z", "iso_A", "iso_flux_LIS")
        try:
            with np.load(npz, allow_pickle=False) as f:
                arrays = {k: f[k] for k in wanted if k in f}
        except (OSError, EOFError, ValueError) as exc:  # ValueError: an object array would need pickles
            raise ValueError(f"{npz}: not a readable npz file without pickles ({exc})") from None
        missing = [k for k in wanted if k not in arrays]
        if missing:
            raise ValueError(f"{npz}: missing arrays {missing} (a GALPROP reference npz holds {list(wanted)})")
        source = npz
        e_mev, iso_z, iso_a = arrays["Ekin_MeV_per_n"], arrays["iso_Z"], arrays["iso_A"]
        flux = arrays["iso_flux_LIS"]
        _check_nodes(npz, galdef, arrays["r_kpc"], arrays["z_kpc"])
        flux = flux * FLUX_CGS_MEV_TO_SI_GEV
    else:  # FITS output (checked above that there is some)
        from crprop.galprop.fits import read_nuclei_fits

        source = fits_files[0]
        out = read_nuclei_fits(source)
        if len(out.z_kpc) < 3 or len(out.r_kpc) < 3:
            raise ValueError(f"{source}: {len(out.r_kpc)} r x {len(out.z_kpc)} z nodes; crnet compares the full "
                             "(r, z) output at the Sun (GALPROP's nuclei_full_54_* with output_gcr_full = 1), not "
                             "a single z slice")
        _check_nodes(source, galdef, out.r_kpc, out.z_kpc)
        grid = Grid(out.r_kpc, out.z_kpc, out.ekin_mev_per_n)
        weights = grid.sun_weights(R_SUN_KPC, Z_SUN_KPC)
        # nuclei only: GALPROP's default runs also write electrons and positrons (A = 0) and antiprotons and
        # antideuterons (Z = -1) to this file, and K-shell electron states (K_electron = 1) are not species
        keep = (np.asarray(out.K_electron) == 0) & (np.asarray(out.Z) >= 1) & (np.asarray(out.A) >= 1)
        at_sun = sum(w * out.flux[:, ir, jz, :] for ir, jz, w in weights)
        e_mev = out.ekin_mev_per_n
        iso_z, iso_a = np.asarray(out.Z)[keep], np.asarray(out.A)[keep]
        flux = at_sun[keep] * FLUX_CGS_MEV_TO_SI_GEV
    _check_output(source, energies, np.asarray(e_mev, dtype=float), iso_z, iso_a, np.asarray(flux, dtype=float))
    return GalpropRun(run_dir.name, galdef, params, np.asarray(e_mev, dtype=float) / 1e3, np.asarray(iso_z).astype(int),
                      np.asarray(iso_a).astype(int), np.asarray(flux, dtype=float))


def _describe_nodes(nodes: np.ndarray) -> str:
    """'lo..hi kpc in n nodes (step d kpc)' of a grid axis, for messages."""
    if nodes.size == 0:
        return "no node"
    step = f"{(nodes[-1] - nodes[0]) / (nodes.size - 1):.6g} kpc" if nodes.size > 1 else "none"
    return f"{nodes[0]:.6g}..{nodes[-1]:.6g} kpc in {nodes.size} nodes (step {step})"


def _check_nodes(source: Path, galdef: Galdef, r_kpc, z_kpc) -> None:
    """ValueError naming the file and the axis when the output's r or z nodes (kpc) are not the galdef's, in number
    or, to :data:`GRID_NODE_TOL_STEPS` of a step, in value: the Sun's flux of another grid is another run's."""
    grid = galdef.grid()
    for axis, got, want, step in (("r", r_kpc, grid.r_kpc(), grid.dr), ("z", z_kpc, grid.z_kpc(), grid.dz)):
        got = np.asarray(got, dtype=float)
        if got.ndim != 1 or got.shape != want.shape or not np.all(np.abs(got - want) <= GRID_NODE_TOL_STEPS * step):
            raise ValueError(f"{source}: its {axis} grid reaches {_describe_nodes(got.ravel())}, the galdef's "
                             f"{_describe_nodes(want)}: output of another run")


def _check_output(source: Path, energies_mev: np.ndarray, e_mev: np.ndarray, iso_z, iso_a, flux: np.ndarray) -> None:
    """GALPROP output that belongs to its galdef: same energy grid, integral Z and A, finite fluxes >= 0 shaped
    (n_isotopes, n_E); ValueError naming the file otherwise (before a propagation is spent on it)."""
    if e_mev.shape != energies_mev.shape or not np.allclose(e_mev, energies_mev, rtol=1e-6):
        raise ValueError(f"{source}: {e_mev.size} energies {e_mev[:1]}..{e_mev[-1:]} MeV/n, the galdef's grid has "
                         f"{energies_mev.size} ({energies_mev[0]:.6g}..{energies_mev[-1]:.6g} MeV/n): output of "
                         "another run")
    z, a = np.asarray(iso_z, dtype=float), np.asarray(iso_a, dtype=float)
    if z.ndim != 1 or z.shape != a.shape or np.any(z != np.round(z)) or np.any(a != np.round(a)) or np.any(z < 1):
        raise ValueError(f"{source}: iso_Z / iso_A must be matching 1-D lists of integers >= 1")
    if flux.shape != (z.size, e_mev.size):
        raise ValueError(f"{source}: flux of shape {flux.shape}, expected (n_isotopes={z.size}, n_E={e_mev.size})")
    if not np.all(np.isfinite(flux)) or np.any(flux < 0):
        raise ValueError(f"{source}: fluxes must be finite and >= 0")


def deviation_table(model: Spectra, reference: Spectra, emin_gev: float = COMPARE_EMIN_GEV,
                    emax_gev: float = COMPARE_EMAX_GEV) -> list[dict]:
    """Per element (and B/C): largest |model/reference - 1| in [emin, emax] GeV/n and where it occurs.

    Both spectra must share the energy grid; the first model of each is compared.
    """
    if not np.allclose(model.ekin_gev_per_n, reference.ekin_gev_per_n, rtol=1e-9):
        raise ValueError("model and reference spectra are on different energy grids")
    e = model.ekin_gev_per_n
    sel = (e >= emin_gev * (1 - 1e-9)) & (e <= emax_gev * (1 + 1e-9))
    if not sel.any():
        raise ValueError(f"energy window [{emin_gev:.6g}, {emax_gev:.6g}] GeV/n holds no grid energy "
                         f"({e[0]:.6g} .. {e[-1]:.6g} GeV/n)")
    rows = []
    missing = [s for s in reference.elements if s not in model.elements]
    if missing:
        raise ValueError(f"the model has no {missing} (the reference does): not the same network")
    names = list(reference.elements)
    series = {s: (model.flux(s)[0], reference.flux(s)[0]) for s in names}
    if "B" in series and "C" in series:
        series["B/C"] = (series["B"][0] / series["C"][0], series["B"][1] / series["C"][1])
    for name, (m, r) in series.items():
        ratio = m[sel] / r[sel]
        i = int(np.argmax(np.abs(ratio - 1)))
        rows.append({"species": name, "max_abs_dev": float(abs(ratio[i] - 1)), "signed_dev": float(ratio[i] - 1),
                     "at_GeV_per_n": float(e[sel][i])})
    return rows


def format_table(rows: list[dict], title: str = "") -> str:
    lines = [title] if title else []
    lines.append(f"{'species':8s} {'max |dev|':>10s} {'signed':>9s} {'at GeV/n':>10s}")
    for r in rows:
        lines.append(f"{r['species']:8s} {100 * r['max_abs_dev']:9.3g}% {100 * r['signed_dev']:8.3g}% "
                     f"{r['at_GeV_per_n']:10.3g}")
    return "\n".join(lines)
