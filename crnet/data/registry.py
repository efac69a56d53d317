"""Named data sets shipped inside crnet (``crnet data list`` / ``crnet data show NAME``).

* ``paper`` (default): exactly the arrays the CR-ML code (Tsai, Chung, Yuan & Cheung, JCAP 2022)
  fitted — AMS-02 five-year Li, Be, B, C, O "corrected to LIS", ACE-CRIS B, C, O (2011.5-2016.5,
  corrected to LIS) and Voyager 1 LIS Li, Be, B, C, O; (3, N) float64 arrays (E [GeV/n], flux
  [m^-2 s^-1 sr^-1 (GeV/n)^-1], total 1-sigma error), copied byte for byte and checked by SHA-256
  on load. All blocks are interstellar: no modulation (the CR-ML chi^2 applies none).
* ``ams02-2021``: AMS-02 Physics Reports 894 (2021) Li, Be, B, C, O in rigidity (7 years, stat and
  syst separate, converted to GeV/n with ``DEFAULT_ISOTOPE_MIX``), top of atmosphere, with a
  force-field phi profiled as a nuisance in [200, 1200] MV, plus Voyager 1 (Cummings et al. 2016)
  Li, Be, B, C, O interstellar spectra.
* ``ams02-2021-ace2009``: ``ams02-2021`` plus ACE-CRIS C and O of 2009/03-2010/01 (Lave et al. 2013),
  top of atmosphere in another solar-modulation period: two force-field potentials, each profiled as
  a nuisance (AMS-02 in [200, 1200] MV, ACE-CRIS in [100, 800] MV), with common normalisations.

Provenance and checksums of every shipped file: ``crnet/data/PROVENANCE.md``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

import numpy as np

from crnet.data.dataset import DataBlock, Dataset, Modulation, block_from_table
from crnet.data.table import read_table

DATA_DIR: Path = Path(__file__).resolve().parent
"""Directory holding the shipped data files."""

DEFAULT_DATASET: str = "paper"

PAPER_PERIOD_AMS = "2011/05/19 - 2016/05/26 (AMS-02 five years), corrected to LIS by force-field demodulation"
PAPER_PERIOD_ACE = "2011.5 - 2016.5 (ACE-CRIS, averaged over the AMS-02 period), corrected to LIS"
PAPER_PERIOD_VOY = "2012/342 - 2015/181 (Voyager 1 beyond the heliopause: interstellar, phi = 0)"

PAPER_FILES: dict[str, tuple[str, str, str, str, str]] = {
    # file stem: (sha256, species, experiment, period, reference)
    "Li_AMS2": (
        "a0f43fe348f1df0d97673eef7f2633ff2a21b3ac53c86432273dcfe5f6ebcdf1",
        "Li",
        "AMS-02",
        PAPER_PERIOD_AMS,
        "AMS Collaboration, PRL 120 (2018) 021101; LIS-corrected by the CR-ML authors",
    ),
    "Li_Voyager": (
        "0ed39eb6e437f3f500e4daa0ff51e532ff0b8ae3fcd4ac12c8efc0e8f50f8ff1",
        "Li",
        "Voyager 1",
        PAPER_PERIOD_VOY,
        "Cummings et al., ApJ 831 (2016) 18",
    ),
    "Be_AMS2": (
        "662a5b497ae6295d9a105894dd5b6b5d880a88b792a6333adab43210688bd68b",
        "Be",
        "AMS-02",
        PAPER_PERIOD_AMS,
        "AMS Collaboration, PRL 120 (2018) 021101; LIS-corrected by the CR-ML authors",
    ),
    "Be_Voyager": (
        "a9ff862da34ae9843c38223d23c7d900a7ddef976e3a74246150012df80de5eb",
        "Be",
        "Voyager 1",
        PAPER_PERIOD_VOY,
        "Cummings et al., ApJ 831 (2016) 18",
    ),
    "B_AMS2": (
        "8d2a9ef37cf7328c2c59872e67aadc7d6c1ab7313ef2dd873e4e94dc41bbe64c",
        "B",
        "AMS-02",
        PAPER_PERIOD_AMS,
        "AMS Collaboration, PRL 120 (2018) 021101; LIS-corrected by the CR-ML authors",
    ),
    "B_Voyager": (
        "dfbac58da534be8be97ced16797dad823d8133b0831912a6a04a617a38c16bee",
        "B",
        "Voyager 1",
        PAPER_PERIOD_VOY,
        "Cummings et al., ApJ 831 (2016) 18",
    ),
    "B_ACE": (
        "ce4deee05c25bb04dbf699641d4f16c567eba78865a734efa40b8bfaefc2da5a",
        "B",
        "ACE-CRIS",
        PAPER_PERIOD_ACE,
        "ACE-CRIS level-2 data, LIS-corrected by the CR-ML authors (paper Refs. [33, 34])",
    ),
    "C_AMS2": (
        "4c584431ef54c8468884fbf328f9ed67af76dbbfd6b09d0f1e63e40cdc25163c",
        "C",
        "AMS-02",
        PAPER_PERIOD_AMS,
        "AMS Collaboration, PRL 119 (2017) 251101; LIS-corrected by the CR-ML authors",
    ),
    "C_Voyager": (
        "8229dafc1997370cf7ef7ba33de9017ad5a79f8bdca3736789e9200c59b69977",
        "C",
        "Voyager 1",
        PAPER_PERIOD_VOY,
        "Cummings et al., ApJ 831 (2016) 18",
    ),
    "C_ACE": (
        "88badc6c0263ae1084bc204bc7a8db2caf3554e91403d3769861f6f057674f1f",
        "C",
        "ACE-CRIS",
        PAPER_PERIOD_ACE,
        "ACE-CRIS level-2 data, LIS-corrected by the CR-ML authors (paper Refs. [33, 34])",
    ),
    "O_AMS2": (
        "91e0160fb70e07881fdafd6af864bd44ae60da7046b1563a329b5b13b314bf92",
        "O",
        "AMS-02",
        PAPER_PERIOD_AMS,
        "AMS Collaboration, PRL 119 (2017) 251101; LIS-corrected by the CR-ML authors",
    ),
    "O_Voyager": (
        "c6d397b727ef5122b0ca45fbe155a69121de9f576a65046b04fe930361add367",
        "O",
        "Voyager 1",
        PAPER_PERIOD_VOY,
        "Cummings et al., ApJ 831 (2016) 18",
    ),
    "O_ACE": (
        "ed955db086ef10f6cc7fa68aea7a9bcc93d7a45afd27aacaa4375d08f177be35",
        "O",
        "ACE-CRIS",
        PAPER_PERIOD_ACE,
        "ACE-CRIS level-2 data, LIS-corrected by the CR-ML authors (paper Refs. [33, 34])",
    ),
}
"""The 13 CR-ML arrays in the order the CR-ML chi^2 sums them (Li, Be, B, C, O; AMS-02, Voyager, ACE)."""

AMS2021_FILES: dict[str, str] = {
    "AMS02_PhysRep2021_Li_R.csv": "2d91700b39e367630d0a08aa6b0da4f003ae71470843983580e87a38d6071da1",
    "AMS02_PhysRep2021_Be_R.csv": "e0f68cd21cca07fbfa4099ed7895c0863bd5e4bf077b77e1ea1a0fb31b9608d3",
    "AMS02_PhysRep2021_B_R.csv": "efc7bc47d02f6e48d3a4748086d5fa6511942dca8da5f92d00175e631aaa6812",
    "AMS02_PhysRep2021_C_R.csv": "ac1f71405bc2adb733e4cb11b74327ebdd6b728c24c7d3462e6f4e57ec024310",
    "AMS02_PhysRep2021_O_R.csv": "05314e9d80d293100c9aafb4ce3f4c555e1609121697b9aac7cbff5c71ce02e0",
    "Voyager1_Cummings2016_Li_Ekn.csv": "79f2b385ae7c954a23f38c759c6e35270b5c793c006fc294703a31b704179d76",
    "Voyager1_Cummings2016_Be_Ekn.csv": "771d7f9e16f39e49b2b9d94428f05d6235b4ecd7d124eff79a050dcd6d80523e",
    "Voyager1_Cummings2016_B_Ekn.csv": "9df9d44d233f166596fd92bce8c9d28324d647c1cee70b09f27a699ce495c9fb",
    "Voyager1_Cummings2016_C_Ekn.csv": "28f60fb4b04aa677e8730dbc9cec74aebaacadbfee30960bfcb8f61daae37f13",
    "Voyager1_Cummings2016_O_Ekn.csv": "a6274ff1b66795e4d34a5af2517d19bf0e681d23a6691eb350ed1fce46204a01",
}
"""Shipped CSV copies of ../shared/data (byte-identical; AMS02_* in ams02_physrep2021/, the rest in
voyager1/) with their SHA-256."""

ACE2009_FILES: dict[str, str] = {
    "ACECRIS_C_200903_201001_Ekn.csv": "05bd0046e3998a591f3ec461271b924551ce02c64e27bb37997dd9cfe642d1ed",
    "ACECRIS_O_200903_201001_Ekn.csv": "45a5654db514e3b4b770dcf318dca49e5a379de8bec7c7f430a49100e14f49fb",
}
"""Shipped copies (ace_cris/) of ../shared/data/ace_cris C and O for 2009/03/23-2010/01/13, with SHA-256. N is
left out: its source abundance is fixed in the propagation model, and only C, O have a free normalisation."""

ACE2009_MODULATION = Modulation(phi_mv=266.0, nuisance=True, bounds_mv=(100.0, 800.0))
"""Force-field phi for ACE-CRIS 2009/03-2010/01 (the deep 2009 solar minimum): profiled in [100, 800] MV;
266 MV is the value CRDB attaches to this period (the files' crdb_phi_MV column)."""

AMS2021_MODULATION = Modulation(phi_mv=650.0, nuisance=True, bounds_mv=(200.0, 1200.0))
"""Force-field phi for AMS-02 2011-2018: profiled in [200, 1200] MV (neutron-monitor based estimates
for the period are ~0.5-0.7 GV); 650 MV is the reference value reported with the data set."""


def _verified_path(relative: str, sha256: str) -> Path:
    path = DATA_DIR / relative
    if not path.is_file():
        raise ValueError(f"{path}: shipped data file missing (broken crnet installation)")
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ValueError(f"{path}: SHA-256 {digest} differs from the recorded {sha256}; file was modified")
    return path


def load_paper_array(path: Path) -> np.ndarray:
    """Load and validate one CR-ML (3, N) array: rows E [GeV/n], flux, 1-sigma error. No pickles."""
    arr = np.load(path, allow_pickle=False)
    if arr.ndim != 2 or arr.shape[0] != 3 or arr.dtype != np.float64:
        raise ValueError(
            f"{path}: expected a (3, N) float64 array (E, flux, sigma), got {arr.shape} {arr.dtype}"
        )
    for row, name in enumerate(("E_GeV_per_n", "flux", "sigma")):
        bad = ~np.isfinite(arr[row]) | (arr[row] <= 0 if row != 1 else arr[row] < 0)
        if np.any(bad):
            j = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{path}: entry {j}, column '{name}': invalid value {float(arr[row, j])!r}")
    steps = np.flatnonzero(np.diff(arr[0]) <= 0)
    if steps.size:
        j = int(steps[0]) + 1
        raise ValueError(f"{path}: entry {j}, column 'E_GeV_per_n': energies not strictly increasing")
    return arr


def paper_dataset() -> Dataset:
    """The CR-ML 'paper' data set: 397 points of Li, Be, B, C, O (LIS), exactly the CR-ML arrays."""
    blocks = []
    for stem, (sha, species, experiment, period, reference) in PAPER_FILES.items():
        path = _verified_path(f"paper/{stem}.npy", sha)
        e, flux, sigma = load_paper_array(path)
        zeros = np.zeros_like(flux)
        blocks.append(
            DataBlock(
                label=f"{species} {experiment}",
                species=species,
                experiment=experiment,
                ekin_gev_per_n=e,
                flux=flux,
                stat_lo=zeros,
                stat_hi=zeros,
                sys_lo=sigma,
                sys_hi=sigma,
                lis=True,
                period=period,
                reference=reference,
                source=str(path),
                lines=np.arange(e.size),
                x_native=e.copy(),
            )
        )
    return Dataset(
        name="paper",
        description="CR-ML (Tsai et al. 2022) data: AMS-02 5-yr Li/Be/B/C/O corrected to LIS, ACE-CRIS B/C/O "
        "corrected to LIS, Voyager 1 LIS; total errors only (stat+syst in quadrature)",
        blocks=tuple(blocks),
        modulation=None,
        provenance="github alan200276/CR-ML @ f8faf43 Data/Exp_Data/*.npy (byte-identical copies)",
    )


def ams02_2021_dataset() -> Dataset:
    """AMS-02 PhysRep 2021 Li/Be/B/C/O (top of atmosphere, phi nuisance) + Voyager 1 LIS."""
    blocks = []
    for name, sha in AMS2021_FILES.items():
        ams = name.startswith("AMS02")
        table = read_table(_verified_path(f"{'ams02_physrep2021' if ams else 'voyager1'}/{name}", sha))
        experiment = "AMS-02" if ams else "Voyager 1"
        blocks.append(block_from_table(table, label=f"{table.species} {experiment}", experiment=experiment))
    return Dataset(
        name="ams02-2021",
        description="AMS-02 Phys. Rep. 894 (2021) 7-yr Li/Be/B/C/O (rigidity -> GeV/n, top of atmosphere, "
        "force-field phi profiled in [200, 1200] MV) + Voyager 1 Cummings 2016 Li/Be/B/C/O (LIS)",
        blocks=tuple(blocks),
        modulation=AMS2021_MODULATION,
        provenance="copies of ../shared/data ams02/ and voyager1/ files; see crnet/data/PROVENANCE.md",
    )


def ams02_2021_ace2009_dataset() -> Dataset:
    """``ams02-2021`` plus ACE-CRIS C and O of 2009/03-2010/01: two modulation periods, one nuisance phi each."""
    base = ams02_2021_dataset()
    ace = []
    for name, sha in ACE2009_FILES.items():
        table = read_table(_verified_path(f"ace_cris/{name}", sha))
        ace.append(block_from_table(table, label=f"{table.species} ACE-CRIS", experiment="ACE-CRIS"))
    ams_period = next(b.period for b in base.blocks if not b.lis)
    return Dataset(
        name="ams02-2021-ace2009",
        description=base.description + " + ACE-CRIS 2009/03-2010/01 C/O (Lave et al. 2013, top of atmosphere, "
        "its own force-field phi profiled in [100, 800] MV)",
        blocks=base.blocks + tuple(ace),
        modulation={ams_period: AMS2021_MODULATION, ace[0].period: ACE2009_MODULATION},
        provenance=base.provenance + "; ACE-CRIS: copies of ../shared/data/ace_cris/ACECRIS_{C,O}_200903_201001",
    )


DATASETS: dict[str, Callable[[], Dataset]] = {
    "paper": paper_dataset,
    "ams02-2021": ams02_2021_dataset,
    "ams02-2021-ace2009": ams02_2021_ace2009_dataset,
}
"""Registry of named data sets: name -> builder."""


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    description: str
    n_points: int
    species: tuple[str, ...]


@cache
def get_dataset(name: str = DEFAULT_DATASET) -> Dataset:
    """The named data set (cached). Raises ValueError listing the known names for an unknown one."""
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name]()


def list_datasets() -> list[DatasetInfo]:
    """Name, description, number of points and species of every named data set."""
    out = []
    for name in DATASETS:
        ds = get_dataset(name)
        out.append(DatasetInfo(name, ds.description, ds.n_points, tuple(ds.species)))
    return out
