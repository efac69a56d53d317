"""Compare crprop with a GALPROP run: a run directory holds the galdef and GALPROP's output.

Output accepted: the reference-run npz layout of ../shared/reference/galprop (``<run>.npz`` with
``Ekin_MeV_per_n``, ``elem_Z``, ``elem_flux_LIS``, ``iso_Z``, ``iso_A``, ``iso_flux_LIS`` in
cm^-2 s^-1 sr^-1 (MeV/n)^-1, the Sun at r = 8.5 kpc and z = mean of the +-dz/2 nodes), or GALPROP's
own nuclei FITS file (``nuclei_full_54_*`` / ``nuclei_54_*``, read with crprop.galprop.fits and taken
at the same solar position).
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
        wanted = ("Ekin_MeV_per_n", "iso_Z", "iso_A", "iso_flux_LIS")
        try:
            with np.load(npz, allow_pickle=False) as f:
                arrays = {k: f[k] for k in (*wanted, "z_kpc") if k in f}
        except (OSError, EOFError, ValueError) as exc:  # ValueError: an object array would need pickles
            raise ValueError(f"{npz}: not a readable npz file without pickles ({exc})") from None
        missing = [k for k in wanted if k not in arrays]
        if missing:
            raise ValueError(f"{npz}: missing arrays {missing} (a GALPROP reference npz holds {list(wanted)})")
        source = npz
        e_mev, iso_z, iso_a = arrays["Ekin_MeV_per_n"], arrays["iso_Z"], arrays["iso_A"]
        flux = arrays["iso_flux_LIS"]
        z_npz, z_top = np.asarray(arrays.get("z_kpc", []), dtype=float), float(galdef.grid().z_kpc()[-1])
        if z_npz.size and not np.isclose(z_npz.max(), z_top, rtol=1e-6, atol=1e-6):
            raise ValueError(f"{npz}: its z grid reaches {z_npz.max():.6g} kpc, the galdef's {z_top:.6g} kpc: output "
                             "of another run")
        flux = flux * FLUX_CGS_MEV_TO_SI_GEV
    else:  # FITS output (checked above that there is some)
        from crprop.galprop.fits import read_nuclei_fits

        source = fits_files[0]
        out = read_nuclei_fits(source)
        if len(out.z_kpc) < 3 or len(out.r_kpc) < 3:
            raise ValueError(f"{source}: {len(out.r_kpc)} r x {len(out.z_kpc)} z nodes; crnet compares the full "
                             "(r, z) output at the Sun (GALPROP's nuclei_full_54_* with output_gcr_full = 1), not "
                             "a single z slice")
        grid = Grid(out.r_kpc, out.z_kpc, out.ekin_mev_per_n)
        weights = grid.sun_weights(R_SUN_KPC, Z_SUN_KPC)
        keep = np.asarray(out.K_electron) == 0
        at_sun = sum(w * out.flux[:, ir, jz, :] for ir, jz, w in weights)
        e_mev = out.ekin_mev_per_n
        iso_z, iso_a = np.asarray(out.Z)[keep], np.asarray(out.A)[keep]
        flux = at_sun[keep] * FLUX_CGS_MEV_TO_SI_GEV
    _check_output(source, energies, np.asarray(e_mev, dtype=float), iso_z, iso_a, np.asarray(flux, dtype=float))
    return GalpropRun(run_dir.name, galdef, params, np.asarray(e_mev, dtype=float) / 1e3, np.asarray(iso_z).astype(int),
                      np.asarray(iso_a).astype(int), np.asarray(flux, dtype=float))


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
