"""Nuclear network data and cross sections (GALPROP v54 conventions).

* :mod:`~crprop.nuclear.decay` -- GALPROP's decay network (``nucdata``: branching ratios, half-lives);
* :mod:`~crprop.nuclear.species` -- isotope table, propagated network and solve order;
* :mod:`~crprop.nuclear.inelastic` -- total inelastic (loss) cross sections on H and He, K-capture;
* :mod:`~crprop.nuclear.isotope_cs` -- GALPROP ``isotope_cs`` (evaluated tables, fits, renormalised
  Webber / Silberberg-Tsao formulae of :mod:`~crprop.nuclear.webber93` and
  :mod:`~crprop.nuclear.silberberg_tsao`);
* :mod:`~crprop.nuclear.production` -- ghost-folded parent -> daughter production tables;
* :mod:`~crprop.nuclear.tables` -- Webber 2003 / Evoli 2019 cumulative tables (DRAGON2).

Energies are kinetic energies per nucleon in MeV/n, cross sections in mb, half-lives in years
unless a name says otherwise. Data files live in ``crprop/data/cross_sections`` (see
``crprop/data/PROVENANCE.md``); nothing is downloaded.
"""

from __future__ import annotations

from crprop.nuclear.decay import DecayResult, nucdata
from crprop.nuclear.inelastic import (
    INELASTIC_MODELS,
    he_to_h_ratios,
    he_to_h_total_ratio,
    kcapture_cs,
    loss_cross_sections,
    nucleon_cs,
    sigma_inel_mb,
    sigma_pp_inel_mb,
)
from crprop.nuclear.isotope_cs import isotope_cs
from crprop.nuclear.production import (
    KIND_ATTACH_STRIP,
    KIND_KCAPTURE_DECAY,
    KIND_SPALLATION,
    PRODUCTION_MODELS,
    ProductionTable,
    decayed_cross_section,
    ghost_channels,
    production_table,
)
from crprop.nuclear.species import (
    CRML_USE_Z,
    SOLVE_ORDERS,
    Decay,
    Isotope,
    Network,
    Species,
    build_network,
    isotope,
    isotope_table,
)

__all__ = [
    "CRML_USE_Z",
    "INELASTIC_MODELS",
    "KIND_ATTACH_STRIP",
    "KIND_KCAPTURE_DECAY",
    "KIND_SPALLATION",
    "PRODUCTION_MODELS",
    "SOLVE_ORDERS",
    "Decay",
    "DecayResult",
    "Isotope",
    "Network",
    "ProductionTable",
    "Species",
    "build_network",
    "decayed_cross_section",
    "ghost_channels",
    "he_to_h_ratios",
    "he_to_h_total_ratio",
    "isotope",
    "isotope_cs",
    "isotope_table",
    "kcapture_cs",
    "loss_cross_sections",
    "nucdata",
    "nucleon_cs",
    "production_table",
    "sigma_inel_mb",
    "sigma_pp_inel_mb",
]
