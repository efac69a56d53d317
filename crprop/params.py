"""The paper's model parameters (Tsai et al. 2022, Table 1 and Table 2) and their GALPROP galdef mapping.

Propagation and source parameters (:class:`PropagationParams`, the 10 machine-learning targets of
Eq. 4.2, in that order):

===================  ===========================================  =========================  ===============
field                meaning                                      galdef key(s)              prior (Table 1)
===================  ===========================================  =========================  ===============
d0_1e28_cm2_s        D0 at R = 4 GV, in units of 1e28 cm^2/s      D0_xx / 1e28 (D_rigid_br    1 .. 15
                                                                  = 4000 MV)
delta                rigidity index of D_xx                       D_g_1 = D_g_2              0.2 .. 1.0
eta                  velocity index: D_xx ~ beta^eta              eta_beta                   -4 .. 4
v_alfven_km_s        Alfven speed, km/s                           v_Alfven (diff_reacc = 1)  0 .. 60
z_halo_kpc           halo half-height z_h, kpc                    z_min = -z_h, z_max = +z_h 1 .. 20
nu1                  injection index below R_br1                  nuc_g_0                    0 .. 2
nu2                  injection index between R_br1 and R_br2      nuc_g_1                    1 .. 4
nu3                  injection index above R_br2                  nuc_g_2 (and nuc_g_3)      1 .. 4
r_break1_mv          first injection break R_br1, MV              nuc_rigid_br0              1e2 .. 1e4
r_break2_mv          second injection break R_br2, MV             nuc_rigid_br               1e5 .. 1e7
===================  ===========================================  =========================  ===============

D_xx = D0 beta^eta (R / 4 GV)^delta; injection Q ~ R^-nu1 (R < R_br1), R^-nu2 (R_br1 <= R < R_br2),
R^-nu3 (R >= R_br2), continuous at the breaks (GALPROP's sharp breaks; the reference runs put GALPROP's
third break nuc_rigid_br2 = 1e12 MV, above any grid rigidity, with nuc_g_3 = nu3).

D0 is stored in units of 1e28 cm^2/s: Table 1 quotes it so, the CR-ML targets use the same unit, and
O(1) numbers keep (B, 10) arrays well conditioned; :attr:`PropagationParams.d0_cm2_s` gives cm^2/s.
The breaks are stored linearly in MV (GALPROP's unit); samplers and networks use log10(R/MV)
(``log_breaks=True`` in the array conversions, box :data:`LOG_PRIOR_BOX`).

The prior box is closed ([low, high]); Table 1 writes open intervals, but a sampler landing exactly on an
edge is harmless. All reference runs (crml_base, p1, p2, p4, p6 and their variants) lie inside it
(tests/test_params.py checks this); ``check_prior=False`` still allows GALPROP cross-check points
outside it while keeping the physical checks (finite, D0 > 0, z_h > 0, v_A >= 0, 0 < R_br1 < R_br2,
0 < delta < 2 when v_A > 0).

Normalisations (:class:`Normalisations`, Table 2): q_c, q_o are the 12C and 16O source abundances in
GALPROP's units (relative to 1H = 1.06e6; galdef ``iso_abundance_06_012`` / ``iso_abundance_08_016``,
3600 / 4600 in the CR-ML galdef); xi_li, xi_be are dimensionless factors on the Li and Be fluxes
(N_Li = Phi_Li / xi_Li, N_Be = Phi_Be / xi_Be, N_O = Phi_O q_C / q_O in Table 2).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from crprop.galprop.galdef import Galdef, GaldefError, symmetric_halo_kpc
from crprop.physics._checks import as_real, real_array

PARAM_NAMES: tuple[str, ...] = (
    "d0_1e28_cm2_s", "delta", "eta", "v_alfven_km_s", "z_halo_kpc",
    "nu1", "nu2", "nu3", "r_break1_mv", "r_break2_mv",
)
"""Field order of :class:`PropagationParams` and of the columns of its arrays (paper Eq. 4.2)."""

LOG_PARAM_NAMES: tuple[str, ...] = PARAM_NAMES[:8] + ("log10_r_break1_mv", "log10_r_break2_mv")
"""Column names of the arrays with ``log_breaks=True`` (breaks as log10(R/MV))."""

PARAM_UNITS: Mapping[str, str] = {
    "d0_1e28_cm2_s": "1e28 cm^2 s^-1", "delta": "", "eta": "", "v_alfven_km_s": "km s^-1",
    "z_halo_kpc": "kpc", "nu1": "", "nu2": "", "nu3": "", "r_break1_mv": "MV", "r_break2_mv": "MV",
    "log10_r_break1_mv": "log10(MV)", "log10_r_break2_mv": "log10(MV)",
}
"""Unit of every column name ('' = dimensionless)."""

PRIOR_BOX: Mapping[str, tuple[float, float, str]] = {
    "d0_1e28_cm2_s": (1.0, 15.0, "1e28 cm^2 s^-1"),
    "delta": (0.2, 1.0, ""),
    "eta": (-4.0, 4.0, ""),
    "v_alfven_km_s": (0.0, 60.0, "km s^-1"),
    "z_halo_kpc": (1.0, 20.0, "kpc"),
    "nu1": (0.0, 2.0, ""),
    "nu2": (1.0, 4.0, ""),
    "nu3": (1.0, 4.0, ""),
    "r_break1_mv": (1.0e2, 1.0e4, "MV"),
    "r_break2_mv": (1.0e5, 1.0e7, "MV"),
}
"""Table 1 of the paper: name -> (low, high, unit), closed interval."""

LOG_PRIOR_BOX: Mapping[str, tuple[float, float, str]] = {
    **{k: PRIOR_BOX[k] for k in PARAM_NAMES[:8]},
    "log10_r_break1_mv": (2.0, 4.0, "log10(MV)"),
    "log10_r_break2_mv": (5.0, 7.0, "log10(MV)"),
}
"""The same box with the breaks as log10(R/MV), as Table 1 writes it (for samplers)."""

D_RIGID_REF_MV = 4.0e3
"""Reference rigidity of D0 (D_rigid_br), MV."""

NUC_RIGID_BR2_INERT_MV = 1.0e12
"""GALPROP's third injection break as the reference runs set it (above any grid rigidity), MV."""

_CM2 = 1.0e28

GALPROP_JSON_KEYS: Mapping[str, str] = {
    "D0": "d0_1e28_cm2_s", "delta": "delta", "eta": "eta", "vA": "v_alfven_km_s", "zh": "z_halo_kpc",
    "nu1": "nu1", "nu2": "nu2", "nu3": "nu3", "Rbr1_MV": "r_break1_mv", "Rbr2_MV": "r_break2_mv",
}
"""Keys of a reference run json's ``physical_parameters`` block -> :class:`PropagationParams` field
(``D0`` in cm^2/s, the others in the field's unit)."""


def _fmt_range(name: str, box: Mapping[str, tuple[float, float, str]]) -> str:
    lo, hi, unit = box[name]
    return f"[{lo:g}, {hi:g}]{' ' + unit if unit else ''}"


def _real_value(name: str, raw: object, allowed: str) -> float:
    """``raw`` as a float when it is a real number: Python int / float, any numpy integer or floating scalar
    (or 0-d array of one). Refused with a ValueError naming ``name`` and ``allowed``: bools, Python or numpy
    (``float(True) == 1.0`` would turn a flag passed by mistake into a value), strings (``float("0.5")``
    parses: a typo, not a value), complex numbers, None, arrays (crprop.physics._checks.as_real: one rule for
    every real-number check). Finiteness is the caller's check."""
    arr, why = as_real(raw)
    if arr is not None and arr.ndim != 0:
        arr, why = None, f"an array of shape {arr.shape}"
    if arr is None:
        raise ValueError(f"{name} must be a number (a Python or numpy int / float, not a bool), got {raw!r} "
                         f"({why}); allowed {allowed}")
    return float(arr)


@dataclass(frozen=True)
class PropagationParams:
    """Table 1 propagation and source parameters; units are in the field names (see module docstring).

    Construction coerces to float (any Python or numpy int / float; bools and strings are refused) and
    rejects NaN / inf; :meth:`validate` checks the prior box.
    """

    d0_1e28_cm2_s: float
    delta: float
    eta: float
    v_alfven_km_s: float
    z_halo_kpc: float
    nu1: float
    nu2: float
    nu3: float
    r_break1_mv: float
    r_break2_mv: float

    def __post_init__(self) -> None:
        for name in PARAM_NAMES:
            value = _real_value(name, getattr(self, name), f"range {_fmt_range(name, PRIOR_BOX)}")
            if not math.isfinite(value):
                raise ValueError(f"{name} = {value} is not finite; allowed range "
                                 f"{_fmt_range(name, PRIOR_BOX)}")
            object.__setattr__(self, name, value)

    # ----------------------------------------------------------------------------- validation
    def validate(self, check_prior: bool = True) -> PropagationParams:
        """Raise ValueError naming the field and its allowed range if out of the prior box
        (``check_prior=True``) or unphysical (always); returns self.
        """
        for name in PARAM_NAMES:
            value = getattr(self, name)
            if not math.isfinite(value):
                raise ValueError(f"{name} = {value} is not finite; allowed range "
                                 f"{_fmt_range(name, PRIOR_BOX)}")
            if check_prior:
                lo, hi, _ = PRIOR_BOX[name]
                if not lo <= value <= hi:
                    raise ValueError(f"{name} = {value:g} outside the prior box: allowed range "
                                     f"{_fmt_range(name, PRIOR_BOX)} (pass check_prior=False for points "
                                     "outside Table 1)")
        physical = (
            ("d0_1e28_cm2_s", self.d0_1e28_cm2_s > 0, "> 0"),
            ("z_halo_kpc", self.z_halo_kpc > 0, "> 0 kpc"),
            ("v_alfven_km_s", self.v_alfven_km_s >= 0, ">= 0 km s^-1"),
            ("r_break1_mv", self.r_break1_mv > 0, "> 0 MV"),
            ("r_break2_mv", self.r_break2_mv > self.r_break1_mv, f"> r_break1_mv = {self.r_break1_mv:g} MV"),
            ("delta", self.v_alfven_km_s == 0 or 0 < self.delta < 2, "in (0, 2) when v_alfven_km_s > 0"),
        )
        for name, ok, allowed in physical:
            if not ok:
                raise ValueError(f"{name} = {getattr(self, name):g} is unphysical: allowed {allowed}")
        return self

    def in_prior(self) -> bool:
        """Whether every field lies inside :data:`PRIOR_BOX`."""
        return all(PRIOR_BOX[n][0] <= getattr(self, n) <= PRIOR_BOX[n][1] for n in PARAM_NAMES)

    # -------------------------------------------------------------------------- derived values
    @property
    def d0_cm2_s(self) -> float:
        """D0 at 4 GV in cm^2/s."""
        return self.d0_1e28_cm2_s * _CM2

    @property
    def log10_r_break1_mv(self) -> float:
        """log10(R_br1 / MV)."""
        return math.log10(self.r_break1_mv)

    @property
    def log10_r_break2_mv(self) -> float:
        """log10(R_br2 / MV)."""
        return math.log10(self.r_break2_mv)

    # ------------------------------------------------------------------------- conversions
    def to_dict(self) -> dict[str, float]:
        """{field: value} in :data:`PARAM_NAMES` order (units in the names)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> PropagationParams:
        """From {field: value}; exactly the :data:`PARAM_NAMES` keys."""
        missing = [n for n in PARAM_NAMES if n not in values]
        extra = [k for k in values if k not in PARAM_NAMES]
        if missing or extra:
            raise ValueError(f"PropagationParams.from_dict: missing {missing}, unknown {extra}")
        return cls(**{n: values[n] for n in PARAM_NAMES})

    def as_vector(self, log_breaks: bool = False) -> np.ndarray:
        """(10,) float64 in :data:`PARAM_NAMES` order (breaks as log10(R/MV) when ``log_breaks``)."""
        vec = np.array([getattr(self, n) for n in PARAM_NAMES], dtype=np.float64)
        if log_breaks:
            vec[8:] = np.log10(vec[8:])
        return vec

    @classmethod
    def from_vector(cls, vec: Sequence[float] | np.ndarray, log_breaks: bool = False,
                    check_prior: bool = True) -> PropagationParams:
        """Inverse of :meth:`as_vector`; validated (see :meth:`validate`)."""
        arr = real_array("PropagationParams.from_vector: vec", vec, f"{len(PARAM_NAMES)} finite numbers")
        if arr.shape != (len(PARAM_NAMES),):
            raise ValueError(f"expected shape ({len(PARAM_NAMES)},), got {arr.shape}")
        return cls.from_array(arr[None, :], log_breaks=log_breaks, check_prior=check_prior)[0]

    @staticmethod
    def to_array(params: Sequence[PropagationParams], log_breaks: bool = False) -> np.ndarray:
        """(B, 10) float64 array of a batch, columns :data:`PARAM_NAMES` (or :data:`LOG_PARAM_NAMES`)."""
        if isinstance(params, PropagationParams):
            raise TypeError("to_array takes a sequence of PropagationParams; use .as_vector() for one")
        if len(params) == 0:
            return np.zeros((0, len(PARAM_NAMES)))
        return np.stack([p.as_vector(log_breaks=log_breaks) for p in params])

    @classmethod
    def from_array(cls, array: np.ndarray, log_breaks: bool = False,
                   check_prior: bool = True) -> list[PropagationParams]:
        """List of validated params from a (B, 10) array; errors name the row, field and allowed range."""
        arr = real_array("PropagationParams.from_array: array", array, f"a (B, {len(PARAM_NAMES)}) array of numbers")
        if arr.ndim != 2 or arr.shape[1] != len(PARAM_NAMES):
            raise ValueError(f"expected a (B, {len(PARAM_NAMES)}) array, got shape {arr.shape}")
        out: list[PropagationParams] = []
        for i, row in enumerate(arr):
            values = row.copy()
            if log_breaks:
                values[8:] = 10.0 ** values[8:]
            try:
                out.append(cls(*values.tolist()).validate(check_prior=check_prior))
            except ValueError as exc:
                raise ValueError(f"row {i}: {exc}") from None
        return out

    @classmethod
    def from_galprop_json(cls, physical: Mapping[str, Any] | str | Path,
                          source: str | Path | None = None) -> PropagationParams:
        """From the ``physical_parameters`` block of a reference run's json (keys :data:`GALPROP_JSON_KEYS`;
        D0 in cm^2/s, R in MV), or from the json file itself (a path). ``source`` names the file in messages
        when a mapping is given. Not checked against the prior box (call :meth:`validate`).

        This is the run's nominal point. What GALPROP ran is its galdef's (:func:`params_from_galdef`, used by
        :func:`crprop.galprop.compare.load_run`): the two differ for crml_base_xfine, whose galdef puts the halo
        at 3.95 kpc so that dz = 0.1 kpc nodes sit at +-0.05 kpc, while its json keeps 3.9 kpc
        (``tests/test_params.py`` reads every reference json through this method and checks both).

        Raises ValueError naming the file and the missing key, or the key and field of a bad value.
        """
        if isinstance(physical, str | Path):
            path = Path(physical)
            try:
                doc = json.loads(path.read_text(encoding="utf-8"))
            except OSError as exc:
                raise ValueError(f"{path}: cannot read the GALPROP run json ({exc})") from None
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ValueError(f"{path}: not a valid JSON file ({exc})") from None
            if not isinstance(doc, dict) or "physical_parameters" not in doc:
                raise ValueError(f"{path}: missing key 'physical_parameters' (a GALPROP reference run json has "
                                 f"one, with keys {list(GALPROP_JSON_KEYS)})")
            physical, source = doc["physical_parameters"], path
        where = f"{source}: " if source is not None else "GALPROP run json (file not named; pass source=): "
        if not isinstance(physical, Mapping):
            raise ValueError(f"{where}physical_parameters must be an object with keys {list(GALPROP_JSON_KEYS)}, "
                             f"got {type(physical).__name__}")
        missing = [k for k in GALPROP_JSON_KEYS if k not in physical]
        if missing:
            raise ValueError(f"{where}physical_parameters is missing key(s) {missing} (needed: "
                             f"{list(GALPROP_JSON_KEYS)})")
        values: dict[str, float] = {}
        for key, name in GALPROP_JSON_KEYS.items():
            scale = _CM2 if key == "D0" else 1.0
            lo, hi, _ = PRIOR_BOX[name]
            allowed = (f"range [{lo * scale:g}, {hi * scale:g}] cm^2 s^-1" if key == "D0"
                       else f"range {_fmt_range(name, PRIOR_BOX)}")
            values[name] = _real_value(f"{where}physical_parameters[{key!r}] ({name})", physical[key],
                                       allowed) / scale
        try:
            return cls(**values)
        except ValueError as exc:
            raise ValueError(f"{where}physical_parameters: {exc}") from None

    def to_galdef_keys(self) -> dict[str, float | int]:
        """The galdef keys this point sets (D0_xx in cm^2/s, rigidities in MV, v_Alfven in km/s, z in kpc)."""
        return {
            "D0_xx": self.d0_cm2_s, "D_rigid_br": D_RIGID_REF_MV, "D_g_1": self.delta, "D_g_2": self.delta,
            "eta_beta": self.eta, "diff_reacc": 1, "v_Alfven": self.v_alfven_km_s,
            "z_min": -self.z_halo_kpc, "z_max": self.z_halo_kpc,
            "nuc_g_0": self.nu1, "nuc_rigid_br0": self.r_break1_mv, "nuc_g_1": self.nu2,
            "nuc_rigid_br": self.r_break2_mv, "nuc_g_2": self.nu3, "nuc_g_3": self.nu3,
        }


CRML_BASE = PropagationParams(3.25, 0.478, -1.55, 34.9, 3.9, 0.28, 2.42, 2.12, 880.0, 4.67e5)
"""The CR-ML galdef's own point, GALPROP reference run ``crml_base`` (../shared/reference/galprop/README.md):
the default start of fits and the centre of the benchmarks. Not a best fit of the paper's data."""


def params_from_galdef(galdef: Galdef, check_prior: bool = False) -> PropagationParams:
    """The Table 1 point a galdef describes.

    D0 is converted to the 4 GV reference (exact for a single delta):
    D0(4 GV) = D0_xx (4000 MV / D_rigid_br)^delta.
    ``diff_reacc = 0`` gives v_A = 0. Raises :class:`GaldefError` when the galdef is not of the paper's
    form: D_g_1 != D_g_2, z_min != -z_max, or a fourth injection segment that acts on the grid
    (nuc_g_3 != nuc_g_2 with nuc_rigid_br2 below the grid's highest rigidity).
    """
    g = galdef
    if g["D_g_1"] != g["D_g_2"]:
        raise GaldefError(f"D_g_1 = {g['D_g_1']} != D_g_2 = {g['D_g_2']}: the paper's model has one delta",
                          "D_g_2")
    symmetric_halo_kpc(g)
    if g["nuc_g_3"] != g["nuc_g_2"] and g["nuc_rigid_br2"] < g.grid().max_rigidity_mv():
        raise GaldefError(f"nuc_g_3 = {g['nuc_g_3']} != nuc_g_2 = {g['nuc_g_2']} above nuc_rigid_br2 = "
                          f"{g['nuc_rigid_br2']} MV, inside the grid: not a three-segment spectrum",
                          "nuc_g_3")
    delta = float(g["D_g_1"])
    d0 = float(g["D0_xx"]) * (D_RIGID_REF_MV / float(g["D_rigid_br"])) ** delta / _CM2
    v_a = float(g["v_Alfven"]) if g["diff_reacc"] == 1 else 0.0
    params = PropagationParams(d0, delta, g["eta_beta"], v_a, g["z_max"], g["nuc_g_0"], g["nuc_g_1"],
                               g["nuc_g_2"], g["nuc_rigid_br0"], g["nuc_rigid_br"])
    return params.validate(check_prior=check_prior)


def galdef_with_params(galdef: Galdef, params: PropagationParams, check_prior: bool = True) -> Galdef:
    """``galdef`` with the keys of ``params`` set (see :meth:`PropagationParams.to_galdef_keys`).

    Also sets D_rigid_br = 4000 MV, diff_reacc = 1, nuc_g_3 = nu3 (so GALPROP's third break is inert)
    and raises nuc_rigid_br2 to 1e12 MV if it lies below R_br2. The grid steps (dr, dz, energies) are kept.
    """
    params.validate(check_prior=check_prior)
    keys: dict[str, Any] = params.to_galdef_keys()
    if galdef["nuc_rigid_br2"] < params.r_break2_mv:
        keys["nuc_rigid_br2"] = NUC_RIGID_BR2_INERT_MV
    return galdef.with_overrides(keys)


NORMALISATION_NAMES: tuple[str, ...] = ("q_c", "q_o", "xi_li", "xi_be")
"""Field order of :class:`Normalisations` and of its vector."""

NORMALISATION_UNITS: Mapping[str, str] = {
    "q_c": "abundance relative to 1H = 1.06e6", "q_o": "abundance relative to 1H = 1.06e6",
    "xi_li": "", "xi_be": "",
}
"""Unit of each normalisation ('' = dimensionless)."""


@dataclass(frozen=True)
class Normalisations:
    """Table 2 normalisations.

    q_c, q_o: 12C and 16O source abundances relative to 1H = 1.06e6 (GALPROP's iso_abundance units);
    xi_li, xi_be: dimensionless factors dividing the Li and Be fluxes (cross-section uncertainty).
    """

    q_c: float = 3600.0
    q_o: float = 4600.0
    xi_li: float = 1.0
    xi_be: float = 1.0

    def __post_init__(self) -> None:
        for f in fields(self):
            unit = NORMALISATION_UNITS[f.name]
            allowed = f"finite and > 0{f' ({unit})' if unit else ''}"
            value = _real_value(f.name, getattr(self, f.name), allowed)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{f.name} = {value} must be {allowed}")
            object.__setattr__(self, f.name, value)

    def as_vector(self) -> np.ndarray:
        """(4,) float64 (q_c, q_o, xi_li, xi_be)."""
        return np.array([getattr(self, n) for n in NORMALISATION_NAMES], dtype=np.float64)

    @classmethod
    def from_vector(cls, vec: Sequence[float] | np.ndarray) -> Normalisations:
        """Inverse of :meth:`as_vector`."""
        arr = real_array("Normalisations.from_vector: vec", vec, "4 finite numbers > 0 (q_c, q_o, xi_li, xi_be)")
        if arr.shape != (4,):
            raise ValueError(f"expected shape (4,), got {arr.shape}")
        return cls(*arr.tolist())

    @property
    def o_over_c(self) -> float:
        """q_O / q_C (Table 2's N_O = Phi_O q_C / q_O divides the O flux by this)."""
        return self.q_o / self.q_c


def normalisations_from_galdef(galdef: Galdef) -> Normalisations:
    """q_c, q_o from iso_abundance_06_012 / iso_abundance_08_016 (xi_li = xi_be = 1)."""
    return Normalisations(galdef["iso_abundance_06_012"], galdef["iso_abundance_08_016"])


def galdef_with_normalisations(galdef: Galdef, norms: Normalisations) -> Galdef:
    """``galdef`` with the C and O source abundances set: every C (O) isotope is scaled by
    q_c / iso_abundance_06_012 (q_o / iso_abundance_08_016), keeping isotopic ratios. xi_li, xi_be act
    on fluxes after propagation and have no galdef key.
    """
    keys: dict[str, float] = {}
    for z, a_main, q in ((6, 12, norms.q_c), (8, 16, norms.q_o)):
        main = float(galdef[f"iso_abundance_{z:02d}_{a_main:03d}"])
        for (zz, a), value in galdef.isotopic_abundances().items():
            if zz == z and a != a_main and main > 0:
                keys[f"iso_abundance_{z:02d}_{a:03d}"] = value * q / main
        keys[f"iso_abundance_{z:02d}_{a_main:03d}"] = q
    return galdef.with_overrides(keys)
