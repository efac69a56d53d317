"""HDF5 files of propagated spectra (written by ``crnet simulate``, read by ``crnet chi2``).

Layout
------
``Ekin_GeV_per_n``  (n_E,) float64, kinetic energy per nucleon, GeV/n, strictly increasing.
``species``         (n_species,) UTF-8 strings: element symbols ('H', 'Li', ..., 'Si'; sums of the
                    isotopes, computed on write) followed by isotope labels ('1H', '10Be', ...).
``flux_lis``        (n_models, n_species, n_E) float64, unmodulated flux at the Sun,
                    m^-2 s^-1 sr^-1 (GeV/n)^-1.
``params``          (n_models, n_params) float64 model parameters, attribute ``names`` (n_params strings).
``converged``       (n_models,) bool;  ``residual`` (n_models,) float64 (see ``crprop.spectra.Spectra``).
File attributes: ``crnet_version``, ``flux_units``, ``energy_units``, plus ``Spectra.meta`` and the
``attrs`` passed to the writer (mode, backend, grid ...); non-scalar values are stored as JSON strings
and their names listed in the ``json_attrs`` attribute.

The isotopes are the data; the element rows are a convenience for other readers and are checked
against the isotope sums on read.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, NamedTuple

import h5py
import numpy as np

from crnet import __version__
from crnet.data.table import FLUX_UNITS as TABLE_FLUX_UNITS
from crnet.paths import atomic_write
from crnet.store import FORMAT as STORE_FORMAT  # crnet.store imports nothing of crnet but __version__: no cycle
from crprop.physics._checks import REAL_DTYPE_KINDS
from crprop.spectra import SYMBOL_TO_Z, Spectra

ELEMENT_SUM_RTOL: float = 1e-9
"""Relative tolerance between a stored element row and the sum of its stored isotopes (rounding only), for float64
storage; a coarser stored float raises it to :data:`ELEMENT_SUM_EPS_FACTOR` times its machine epsilon
(:func:`element_sum_rtol`)."""

ELEMENT_SUM_EPS_FACTOR: float = 16.0
"""Tolerance of the element sums in units of the stored float's machine epsilon. Each stored value is rounded to
within eps/2: the element row and the (positive) isotope sum then differ by up to eps from storage alone, and a writer
that summed the isotopes in the stored precision adds up to eps/2 per isotope. 16 covers that for elements of up to
~30 isotopes, and is still ~1e-6 for float32, far below any physical inconsistency (a 1 % error). A float32
``flux_lis`` was refused with the float64 tolerance 1e-9 (walk-through by helper-87, session 21)."""

FLUX_UNITS = TABLE_FLUX_UNITS["Ekn"]  # one spelling of the per-(GeV/n) flux unit: crnet.data.table's
ENERGY_UNITS = "GeV/n"
REQUIRED_DATASETS: tuple[str, ...] = ("Ekin_GeV_per_n", "species", "flux_lis", "converged", "residual")
ISOTOPE_LABEL = re.compile(r"^([1-9][0-9]*)([A-Z][a-z]?)$", re.ASCII)
"""An isotope label as crnet writes it: mass number (ASCII digits, no leading zero) then the element symbol; '012C'
or full-width digits named 12C a second time, and its element row counted it twice (helper-105, session 22)."""


def element_sum_rtol(dtype: np.dtype | type) -> float:
    """Relative tolerance of the element-row check for ``flux_lis`` stored as ``dtype``: :data:`ELEMENT_SUM_RTOL`,
    or :data:`ELEMENT_SUM_EPS_FACTOR` x machine epsilon of a coarser float (float32, float16). Integers: the float64
    tolerance (walk-through by helper-87, session 21)."""
    dt = np.dtype(dtype)
    if dt.kind != "f":
        return ELEMENT_SUM_RTOL
    return max(ELEMENT_SUM_RTOL, ELEMENT_SUM_EPS_FACTOR * float(np.finfo(dt).eps))


class SpectraH5(NamedTuple):
    """Contents of a spectra file: ``spectra, params, param_names, attrs = read_spectra_h5(path)``."""

    spectra: Spectra
    params: np.ndarray
    param_names: list[str]
    attrs: dict[str, Any]


def _attr_value(value: Any) -> tuple[Any, bool]:
    """(value as HDF5 attribute, whether it was JSON-encoded)."""
    if isinstance(value, (str, bool, int, float, np.integer, np.floating, np.bool_)):
        return value, False
    return json.dumps(value, default=lambda o: o.tolist() if isinstance(o, np.ndarray) else str(o)), True


def write_spectra_h5(
    path: Path | str,
    spectra: Spectra,
    params: np.ndarray | None = None,
    param_names: list[str] | None = None,
    attrs: dict[str, Any] | None = None,
) -> None:
    """Write ``spectra`` (unmodulated, phi_mv = 0) and optional per-model parameters to ``path``.

    Parameters
    ----------
    spectra : the batch of models; isotopes are stored and element sums added.
    params : (n_models, n_params) parameter values; ``param_names`` (n_params) is then required.
    attrs : extra file attributes (override ``spectra.meta`` entries of the same name).
    """
    if spectra.phi_mv != 0.0:
        raise ValueError(f"flux_lis must be unmodulated; these spectra have phi = {spectra.phi_mv} MV")
    n_models = spectra.n_models
    if params is None:
        if param_names:
            raise ValueError("param_names given without params")
        params_arr, names = np.zeros((n_models, 0)), []
    else:
        params_arr = np.asarray(params, dtype=np.float64)
        if params_arr.ndim == 1:
            params_arr = params_arr[:, None]
        if params_arr.ndim != 2 or params_arr.shape[0] != n_models:
            raise ValueError(
                f"params must have shape (n_models={n_models}, n_params), got {params_arr.shape}"
            )
        names = [str(n) for n in (param_names or [])]
        if len(names) != params_arr.shape[1]:
            raise ValueError(
                f"param_names has {len(names)} entries, params has {params_arr.shape[1]} columns"
            )
    # a diverged model (crprop.solvers.result.SolveResult.flag_nonfinite: converged False, residual inf) would make
    # a file that read_spectra_h5 refuses as a whole (helper-105, session 22): refused here, naming the models
    diverged = np.nonzero(~np.isfinite(spectra.residual) | ~np.isfinite(spectra.iso_flux).all(axis=(1, 2)))[0]
    if diverged.size:
        raise ValueError(f"models {diverged[:10].tolist()} have a non-finite field or residual (their solve "
                         "diverged), which a spectra file cannot hold; propagate them apart or leave them out")
    species, table = spectra.species_table()
    merged = {**spectra.meta, **(attrs or {})}
    atomic_write(path, lambda tmp: _write_file(tmp, spectra.ekin_gev_per_n, species, table, params_arr, names,
                                                spectra.converged, spectra.residual, merged))


def _write_file(path: Path, energies: np.ndarray, species: list[str], table: np.ndarray, params_arr: np.ndarray,
                names: list[str], converged: np.ndarray, residual: np.ndarray, merged: dict[str, Any]) -> None:
    """The HDF5 layout of :func:`write_spectra_h5`, written to ``path`` (a temporary file: atomic_write)."""
    with h5py.File(path, "w") as f:
        f.create_dataset("Ekin_GeV_per_n", data=energies)
        f.create_dataset("species", data=np.array(species, dtype=object), dtype=h5py.string_dtype("utf-8"))
        f.create_dataset("flux_lis", data=table, compression="gzip", shuffle=True)
        dset = f.create_dataset("params", data=params_arr)
        dset.attrs.create(
            "names", np.array(names, dtype=object), shape=(len(names),), dtype=h5py.string_dtype("utf-8")
        )
        f.create_dataset("converged", data=converged)
        f.create_dataset("residual", data=residual)
        json_attrs = []
        for key, value in merged.items():
            stored, encoded = _attr_value(value)
            f.attrs[str(key)] = stored
            if encoded:
                json_attrs.append(str(key))
        f.attrs["json_attrs"] = json.dumps(json_attrs)
        f.attrs["crnet_version"] = __version__
        f.attrs["flux_units"] = FLUX_UNITS
        f.attrs["energy_units"] = ENERGY_UNITS


def _decode(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_decode(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def parse_species(label: str) -> tuple[str, int, int | None]:
    """'B' -> ('element', 5, None); '10Be' -> ('isotope', 4, 10). Raises ValueError otherwise."""
    if label in SYMBOL_TO_Z:
        return "element", SYMBOL_TO_Z[label], None
    m = ISOTOPE_LABEL.match(label)
    if m and m.group(2) in SYMBOL_TO_Z and int(m.group(1)) >= SYMBOL_TO_Z[m.group(2)]:
        return "isotope", SYMBOL_TO_Z[m.group(2)], int(m.group(1))
    raise ValueError(
        f"species {label!r} is neither an element symbol ({', '.join(SYMBOL_TO_Z)}) "
        "nor an isotope label such as '10Be'"
    )


def refuse_mock_store(path: Path | str, f: h5py.File) -> None:
    """ValueError naming ``path`` when the open file ``f`` is a mock store (root attribute ``format`` equal to
    :data:`crnet.store.FORMAT`): its spectra have another layout, and its chi2 is already stored in it."""
    kind = f.attrs.get("format")
    if isinstance(kind, bytes):
        kind = kind.decode(errors="replace")
    if kind == STORE_FORMAT:
        raise ValueError(f"{path}: a mock store (crnet scan), not a spectra file written by `crnet simulate`; its "
                         "chi2_tot per record is stored in it (`crnet store info`)")


def read_spectra_h5(path: Path | str) -> SpectraH5:
    """Read a spectra file into ``crprop.spectra.Spectra`` plus parameters; refuse malformed files.

    Raises ValueError naming the file and the offending dataset for: a mock store (:func:`refuse_mock_store`),
    missing datasets, energies not 1-D / positive / strictly increasing, unknown species labels, duplicate
    species, no isotopes, flux shape not (n_models, n_species, n_E), negative or non-finite fluxes, element rows
    that are not the sum of their isotopes, per-model arrays of the wrong length.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: no such spectra file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise ValueError(f"{path}: not a readable HDF5 file ({exc})") from None
    with f:
        refuse_mock_store(path, f)
        missing = [name for name in REQUIRED_DATASETS if name not in f]
        if missing:
            raise ValueError(
                f"{path}: missing dataset(s) {missing}; a spectra file needs {list(REQUIRED_DATASETS)}"
            )

        def read(name: str, real: bool = True) -> np.ndarray:
            """A dataset's values, as float64 when ``real`` (refused unless integers or floats: no bools, complex
            numbers or strings, REAL_DTYPE_KINDS); wrong kinds (a group, ...) name the dataset."""
            try:
                if not isinstance(f[name], h5py.Dataset):
                    raise TypeError("is a group, not a dataset")
                values = np.asarray(f[name][()])
            except (TypeError, ValueError) as exc:
                raise ValueError(f"{path}: dataset '{name}': malformed ({type(exc).__name__}: {exc})") from None
            if not real:
                return values
            if values.dtype.kind not in REAL_DTYPE_KINDS:
                raise ValueError(f"{path}: dataset '{name}': must be real numbers (integers or floats), got "
                                 f"{values.dtype}")
            return values.astype(np.float64)

        energy = read("Ekin_GeV_per_n")
        species = [_decode(s) for s in np.atleast_1d(read("species", real=False))]
        if not all(isinstance(s, str) for s in species):
            raise ValueError(f"{path}: dataset 'species': labels must be strings, got {species[:3]}")
        flux = read("flux_lis")
        flux_dtype = f["flux_lis"].dtype  # as stored: its precision sets the element-sum tolerance
        converged_raw = read("converged", real=False)
        residual = read("residual")
        if "params" in f:
            params = read("params")
            raw_names = f["params"].attrs.get("names", [])
            if np.ndim(raw_names) != 1:
                raise ValueError(f"{path}: dataset 'params': attribute 'names' must be a 1-D list of strings, got "
                                 f"{raw_names!r}")
            names = [str(_decode(n)) for n in raw_names]
        else:
            params, names = np.zeros((flux.shape[0] if flux.ndim == 3 else 0, 0)), []
        attrs = {k: _decode(v) for k, v in f.attrs.items()}
    try:
        for key in json.loads(attrs.pop("json_attrs", "[]")):
            if key in attrs:
                attrs[key] = json.loads(attrs[key])
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{path}: root attributes: a JSON attribute is malformed ({exc})") from None

    def bad(dataset: str, message: str) -> ValueError:
        return ValueError(f"{path}: dataset '{dataset}': {message}")

    if converged_raw.dtype == bool or (np.issubdtype(converged_raw.dtype, np.integer)
                                       and np.all(np.isin(converged_raw, (0, 1)))):
        converged = converged_raw.astype(bool)
    else:
        raise bad("converged", f"must be booleans (or 0/1), got {converged_raw.dtype} "
                               f"{np.atleast_1d(converged_raw)[:3]!r}")  # a 0-d dataset was an IndexError
    if not np.all(np.isfinite(residual)) or np.any(residual < 0):
        raise bad("residual", "relative residuals must be finite and >= 0")
    for key, unit in (("flux_units", FLUX_UNITS), ("energy_units", ENERGY_UNITS)):
        if key in attrs and str(attrs[key]) != unit:
            raise ValueError(f"{path}: root attribute {key} = {attrs[key]!r}: crnet reads {unit!r} only")
    if len(set(names)) != len(names):
        raise bad("params", f"duplicate column names {names}")

    if energy.ndim != 1 or energy.size < 2:
        raise bad("Ekin_GeV_per_n", f"must be a 1-D grid of >= 2 energies, got shape {energy.shape}")
    if not np.all(np.isfinite(energy)) or np.any(energy <= 0) or np.any(np.diff(energy) <= 0):
        raise bad("Ekin_GeV_per_n", "energies must be finite, > 0 and strictly increasing (GeV/n)")
    if len(set(species)) != len(species):
        raise bad("species", f"duplicate labels in {species}")  # one label per species: ISOTOPE_LABEL's spelling
    parsed = []
    for label in species:
        try:
            parsed.append(parse_species(label))
        except ValueError as exc:
            raise bad("species", str(exc)) from None
    if flux.ndim != 3 or flux.shape[1:] != (len(species), energy.size):
        raise bad(
            "flux_lis",
            f"shape {flux.shape} does not match (n_models, n_species={len(species)}, "
            f"n_E={energy.size}) given by 'species' and 'Ekin_GeV_per_n'",
        )
    if not np.all(np.isfinite(flux)) or np.any(flux < 0):
        raise bad("flux_lis", "fluxes must be finite and >= 0")
    n_models = flux.shape[0]
    for name, arr in (("converged", converged), ("residual", residual)):
        if arr.shape != (n_models,):
            raise bad(name, f"shape {arr.shape}, expected ({n_models},) (one per model)")
    if params.ndim != 2 or params.shape[0] != n_models or len(names) != params.shape[1]:
        raise bad(
            "params",
            f"shape {params.shape} with {len(names)} names; expected ({n_models}, n_params) "
            "and one name per column",
        )
    if not np.all(np.isfinite(params)):
        row, col = np.argwhere(~np.isfinite(params))[0]
        raise bad("params", f"model {row}, {names[col]!r} = {params[row, col]} is not finite")
    iso_idx = [i for i, p in enumerate(parsed) if p[0] == "isotope"]
    if not iso_idx:
        raise bad("species", "no isotope entries (e.g. '12C'); crnet needs isotopes to modulate per Z/A")
    iso_z = np.array([parsed[i][1] for i in iso_idx])
    iso_a = np.array([parsed[i][2] for i in iso_idx])
    iso_flux = flux[:, iso_idx, :]
    rtol = element_sum_rtol(flux_dtype)
    for i, (kind, z, _) in enumerate(parsed):
        if kind != "element":
            continue
        members = iso_z == z
        if not members.any():
            raise bad("species", f"element {species[i]!r} is stored but none of its isotopes is")
        total = iso_flux[:, members, :].sum(axis=1)
        if not np.allclose(flux[:, i, :], total, rtol=rtol, atol=0.0):
            # the largest deviation and the tolerance, not only that it failed (walk-through by helper-87, session 21)
            diff = np.abs(flux[:, i, :] - total)
            with np.errstate(divide="ignore", invalid="ignore"):
                rel = np.where(diff == 0, 0.0, diff / total)  # a row > 0 over isotopes summing to 0: inf
            model, e_bin = np.unravel_index(int(np.argmax(rel)), rel.shape)
            raise bad("flux_lis", f"element row {species[i]!r} is not the sum of its isotopes: largest relative "
                                  f"deviation {rel[model, e_bin]:.3g} (model {model}, E = {energy[e_bin]:.4g} GeV/n), "
                                  f"tolerance {rtol:.3g} for {flux_dtype} storage")
    meta = {k: v for k, v in attrs.items() if k not in ("flux_units", "energy_units")}
    spectra = Spectra(energy, iso_z, iso_a, iso_flux, converged, residual, phi_mv=0.0, meta=meta)
    return SpectraH5(spectra, params, names, attrs)
