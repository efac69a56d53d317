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
    """Read a GALPROP run directory (galdef + npz or FITS output)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"{run_dir} is not a directory")
    galdef = read_galdef(_find_galdef(run_dir))
    params = params_from_galdef(galdef, check_prior=False)
    npz = run_dir / f"{run_dir.name}.npz"
    fits_files = sorted(run_dir.glob("nuclei_full_54_*")) + sorted(run_dir.glob("nuclei_54_*"))
    if npz.exists():
        wanted = ("Ekin_MeV_per_n", "iso_Z", "iso_A", "iso_flux_LIS")
        try:
            with np.load(npz, allow_pickle=False) as f:
                arrays = {k: f[k] for k in wanted if k in f}
        except (OSError, EOFError, ValueError) as exc:  # ValueError: an object array would need pickles
            raise ValueError(f"{npz}: not a readable npz file without pickles ({exc})") from None
        missing = [k for k in wanted if k not in arrays]
        if missing:
            raise ValueError(f"{npz}: missing arrays {missing} (a GALPROP reference npz holds {list(wanted)})")
        e_gev = arrays["Ekin_MeV_per_n"] / 1e3
        iso_z, iso_a = arrays["iso_Z"].astype(int), arrays["iso_A"].astype(int)
        flux = arrays["iso_flux_LIS"] * FLUX_CGS_MEV_TO_SI_GEV
    elif fits_files:
        from crprop.galprop.fits import read_nuclei_fits

        out = read_nuclei_fits(fits_files[0])
        grid = Grid(out.r_kpc, out.z_kpc, out.ekin_mev_per_n)
        weights = grid.sun_weights(R_SUN_KPC, Z_SUN_KPC)
        keep = np.asarray(out.K_electron) == 0
        at_sun = sum(w * out.flux[:, ir, jz, :] for ir, jz, w in weights)
        e_gev = out.ekin_mev_per_n / 1e3
        iso_z, iso_a = np.asarray(out.Z)[keep], np.asarray(out.A)[keep]
        flux = at_sun[keep] * FLUX_CGS_MEV_TO_SI_GEV
    else:
        raise ValueError(f"{run_dir}: no GALPROP output ({npz.name} or nuclei_full_54_* / nuclei_54_* FITS)")
    return GalpropRun(run_dir.name, galdef, params, e_gev, iso_z, iso_a, flux)


def deviation_table(model: Spectra, reference: Spectra, emin_gev: float = COMPARE_EMIN_GEV,
                    emax_gev: float = COMPARE_EMAX_GEV) -> list[dict]:
    """Per element (and B/C): largest |model/reference - 1| in [emin, emax] GeV/n and where it occurs.

    Both spectra must share the energy grid; the first model of each is compared.
    """
    if not np.allclose(model.ekin_gev_per_n, reference.ekin_gev_per_n, rtol=1e-9):
        raise ValueError("model and reference spectra are on different energy grids")
    e = model.ekin_gev_per_n
    sel = (e >= emin_gev * (1 - 1e-9)) & (e <= emax_gev * (1 + 1e-9))
    rows = []
    names = [s for s in reference.elements if s in model.elements]
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
        lines.append(f"{r['species']:8s} {100 * r['max_abs_dev']:9.3f}% {100 * r['signed_dev']:8.3f}% "
                     f"{r['at_GeV_per_n']:10.3g}")
    return "\n".join(lines)
