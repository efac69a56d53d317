"""Reader for GALPROP v54 nuclei FITS output (``nuclei_full_54_<run>.gz``, ``nuclei_54_<run>.gz``).

Layout (``store_gcr_full.cc`` / ``store_gcr.cc``, 2D runs): the primary HDU is a float32 image with
NAXIS = 4, FITS axes (NAXIS1 .. NAXIS4) = (r, z, E, species), i.e. a numpy array of shape
(n_species, n_E, n_z, n_r). Pixel values are E_kin^2 * flux with E_kin the kinetic energy per nucleon
in MeV: A * cr_density * Ekin^2 for nuclei (flux per MeV/nucleon), cr_density * Ekin^2 for electrons
and positrons (A = 0, flux per MeV). Axis grids from the header:

* r = CRVAL1 + i CDELT1 (kpc); z = CRVAL2 + j CDELT2 (kpc);
* log10(Ekin/MeV) = CRVAL3 + k CDELT3 (CDELT3 = log10 Ekin_factor); CRVAL4 = CDELT4 = 1 (species index).

``nuclei_full`` holds every z node (CRVAL2 = z_min); ``nuclei_54`` holds the single slice
z[int(1e-6 - z_min/dz)] (NAXIS2 = 1, CRVAL2 = that z; -0.1 kpc for the CR-ML grid, not z = 0).
Species k (1-based) is described by header keys NUCZkkk, NUCAkkk, NUCKkkk (K-shell electrons), plus
NAMEkkk in later versions; a binary-table extension with Z and A columns is accepted instead.
3D runs (NAXIS = 5) are refused: crprop is 2D.

astropy is an optional dependency (``pip install crnet[fits]``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["GalpropFitsError", "GalpropNuclei", "read_nuclei_fits"]


class GalpropFitsError(ValueError):
    """The file is not a GALPROP 2D nuclei FITS file of the expected layout."""


@dataclass(frozen=True)
class GalpropNuclei:
    """Contents of a GALPROP nuclei FITS file.

    r_kpc (n_r,), z_kpc (n_z,) in kpc; ekin_mev_per_n (n_E,) kinetic energy per nucleon in MeV;
    Z, A, K_electron (n_species,) int; names (n_species,) str ('' when the file has none);
    flux (n_species, n_r, n_z, n_E) float64 in cm^-2 s^-1 sr^-1 (MeV/nucleon)^-1 (per MeV for A = 0),
    index order [species, r, z, E] as in crprop; full: True for nuclei_full (all z), False for the
    single-slice nuclei file; nucnorm: header NUCNORM (GALPROP's source_norm) or None.
    """

    r_kpc: np.ndarray
    z_kpc: np.ndarray
    ekin_mev_per_n: np.ndarray
    Z: np.ndarray
    A: np.ndarray
    K_electron: np.ndarray
    names: tuple[str, ...]
    flux: np.ndarray
    full: bool
    nucnorm: float | None = None

    def species_index(self, z: int, a: int, k_electron: int = 0) -> int:
        """Index of species (Z, A, K) in the species axis; KeyError if absent."""
        hits = np.flatnonzero((self.Z == z) & (self.A == a) & (self.K_electron == k_electron))
        if hits.size == 0:
            raise KeyError(f"species (Z, A, K) = ({z}, {a}, {k_electron}) not in file")
        return int(hits[0])

    def e2_flux(self) -> np.ndarray:
        """E_kin^2 * flux as stored by GALPROP, MeV cm^-2 s^-1 sr^-1 (per nucleon), same shape as flux."""
        return self.flux * self.ekin_mev_per_n ** 2


def _import_fits() -> Any:
    try:
        from astropy.io import fits
    except ImportError as exc:  # pragma: no cover - exercised only without astropy
        raise ImportError("reading GALPROP FITS output needs astropy: pip install crnet[fits]") from exc
    return fits


def _header_float(header: Any, key: str, path: Path) -> float:
    if key not in header:
        raise GalpropFitsError(f"{path}: header keyword {key} missing (not a GALPROP nuclei file)")
    value = float(header[key])
    if not np.isfinite(value):
        raise GalpropFitsError(f"{path}: header keyword {key} = {value} is not finite")
    return value


def _species_from_table(hdul: Any, n_species: int, path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    for hdu in hdul[1:]:
        columns = getattr(hdu, "columns", None)
        if columns is None:
            continue
        names = {c.name.upper(): c.name for c in columns}
        if "Z" in names and "A" in names:
            z = np.asarray(hdu.data[names["Z"]], dtype=np.int64)
            a = np.asarray(hdu.data[names["A"]], dtype=np.int64)
            k_name = names.get("K_ELECTRON", names.get("K"))
            k = np.asarray(hdu.data[k_name], dtype=np.int64) if k_name else np.zeros_like(z)
            if z.shape != (n_species,) or a.shape != (n_species,) or k.shape != (n_species,):
                raise GalpropFitsError(
                    f"{path}: species table has {z.size} rows, image has {n_species} species")
            return z, a, k
    raise GalpropFitsError(f"{path}: species keywords NUCZ001/NUCA001 missing and no table with Z, A columns")


def read_nuclei_fits(path: str | Path) -> GalpropNuclei:
    """Read a GALPROP v54 2D nuclei FITS file (``nuclei_full_54_*`` or ``nuclei_54_*``, gzip or not).

    Returns grids in kpc and MeV/n and the flux in cm^-2 s^-1 sr^-1 (MeV/n)^-1 (pixel / Ekin^2).
    Raises :class:`GalpropFitsError` for a file of another layout (wrong NAXIS, missing CRVAL/CDELT or
    species keywords, non-finite values), ImportError without astropy.
    """
    fits = _import_fits()
    path = Path(path)
    try:
        hdul_ctx = fits.open(path, memmap=False)
    except OSError as exc:
        raise GalpropFitsError(f"{path}: cannot open as FITS: {exc}") from exc
    with hdul_ctx as hdul:
        primary = hdul[0]
        header = primary.header
        naxis = int(header.get("NAXIS", 0))
        if naxis == 5:
            raise GalpropFitsError(f"{path}: NAXIS = 5 is a 3D (x, y, z) GALPROP run; crprop reads 2D only")
        if naxis != 4 or primary.data is None:
            raise GalpropFitsError(
                f"{path}: expected a 4-axis primary image (r, z, E, species), got NAXIS = {naxis}")
        data = np.asarray(primary.data, dtype=np.float64)
        n_species, n_e, n_z, n_r = data.shape
        r0, dr = _header_float(header, "CRVAL1", path), _header_float(header, "CDELT1", path)
        z0, dz = _header_float(header, "CRVAL2", path), _header_float(header, "CDELT2", path)
        loge0, dloge = _header_float(header, "CRVAL3", path), _header_float(header, "CDELT3", path)
        if dr <= 0 or (n_z > 1 and dz <= 0) or dloge <= 0:
            raise GalpropFitsError(f"{path}: axis increments must be positive (CDELT1 = {dr}, CDELT2 = {dz}, "
                                   f"CDELT3 = {dloge})")
        if "NUCZ001" in header:
            keys = [(f"NUCZ{i:03d}", f"NUCA{i:03d}") for i in range(1, n_species + 1)]
            missing = [k for pair in keys for k in pair if k not in header]
            if missing:
                raise GalpropFitsError(
                    f"{path}: {n_species} species in the image but header lacks {missing[:4]}")
            z_arr = np.array([int(header[kz]) for kz, _ in keys], dtype=np.int64)
            a_arr = np.array([int(header[ka]) for _, ka in keys], dtype=np.int64)
            k_arr = np.array([int(header.get(f"NUCK{i:03d}", 0)) for i in range(1, n_species + 1)],
                             dtype=np.int64)
        else:
            z_arr, a_arr, k_arr = _species_from_table(hdul, n_species, path)
        names = tuple(str(header.get(f"NAME{i:03d}", "")).strip() for i in range(1, n_species + 1))
        nucnorm = float(header["NUCNORM"]) if "NUCNORM" in header else None
    if not np.all(np.isfinite(data)):
        raise GalpropFitsError(f"{path}: the image contains NaN or inf")
    ekin = 10.0 ** (loge0 + dloge * np.arange(n_e))
    flux = np.ascontiguousarray(np.transpose(data, (0, 3, 2, 1))) / ekin ** 2
    return GalpropNuclei(
        r_kpc=r0 + dr * np.arange(n_r),
        z_kpc=z0 + dz * np.arange(n_z),
        ekin_mev_per_n=ekin,
        Z=z_arr,
        A=a_arr,
        K_electron=k_arr,
        names=names,
        flux=flux,
        full=n_z > 1,
        nucnorm=nucnorm,
    )
