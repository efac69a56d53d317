"""Measured cosmic-ray data for crnet: readers, unit conversions and named data sets.

Energies are kinetic energy per nucleon in GeV/n, fluxes in m^-2 s^-1 sr^-1 (GeV/n)^-1, solar
modulation potentials in MV. ``get_dataset("paper")`` returns the arrays the CR-ML paper's code fitted
(shipped inside the package, no ../shared needed); ``read_table`` reads the commented-CSV format of
../shared/data; ``dataset_from_files`` builds a data set from such files.
"""

from __future__ import annotations

from crnet.data.dataset import (
    DataBlock,
    Dataset,
    Modulation,
    block_from_table,
    dataset_from_files,
    table_is_lis,
)
from crnet.data.kinematics import (
    DEFAULT_ISOTOPE_MIX,
    convert_x_to_ekn,
    d_ekn_d_rigidity,
    effective_mass_number,
    ekn_to_rigidity,
    rigidity_to_ekn,
)
from crnet.data.registry import (
    DATA_DIR,
    DATASETS,
    DEFAULT_DATASET,
    DatasetInfo,
    get_dataset,
    list_datasets,
    load_paper_array,
)
from crnet.data.table import MeasurementTable, infer_species, read_table

__all__ = [
    "DATASETS",
    "DATA_DIR",
    "DEFAULT_DATASET",
    "DEFAULT_ISOTOPE_MIX",
    "DataBlock",
    "Dataset",
    "DatasetInfo",
    "MeasurementTable",
    "Modulation",
    "block_from_table",
    "convert_x_to_ekn",
    "d_ekn_d_rigidity",
    "dataset_from_files",
    "effective_mass_number",
    "ekn_to_rigidity",
    "get_dataset",
    "infer_species",
    "list_datasets",
    "load_paper_array",
    "read_table",
    "rigidity_to_ekn",
    "table_is_lis",
]
