"""`crnet pseudodata --store mocks.h5 --out test.h5`: test pseudo-data (paper Sec. 4.2, 4.6) for `crnet feedback
--test` and `crnet evaluate --test`.

Machine B's training pseudo-data are made by `crnet train --machine B` itself; this command makes the other file,
the one the machines are tested on, as `crnet pipeline` makes ``test_pseudo.h5``
(:func:`crnet.pseudodata.make_pseudodata`): central spectra from the held-out part of the store (``--centres
test``) when the machines were trained with a hold-out fraction, else from all of it.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crnet.commands.io_checks import (
    check_dataset_option,
    check_input_file,
    check_output,
    flag_message,
    store_dataset,
)
from crnet.data import DEFAULT_DATASET
from crnet.pipeline_config import TEST_SEED_OFFSET
from crnet.pseudodata import (
    CENTRE_SETS,
    DEFAULT_PSEUDO_SIGMA,
    ENVELOPE_DELTA,
    NOISE_MODELS,
    PAPER_MAX_RELATIVE,
    PseudoDataConfig,
)
from crnet.store import StoreError

PSEUDO_FLAGS: dict[str, str] = {
    "n_pseudo": "--n-pseudo", "n_sigma": "--pseudo-sigma", "noise": "--noise", "max_relative": "--max-relative",
    "envelope_delta": "--delta-low/--delta-high", "dataset": "--dataset", "seed": "--seed",
    "holdout_fraction": "--holdout-fraction", "centres": "--centres",
}
"""crnet.pseudodata.PseudoDataConfig fields -> the options of this command (and of `crnet train`)."""


def check_centres(centres: str | None, holdout_fraction: float) -> str:
    """The centre set to draw from, named by option (ValueError): ``centres`` or, when not given, 'test' with a
    hold-out fraction and 'all' without one (what `crnet pipeline` does for ``test_pseudo.h5``)."""
    if not 0.0 <= holdout_fraction < 1.0:
        raise ValueError(f"--holdout-fraction must lie in [0, 1), got {holdout_fraction}")
    if centres is None:
        return "test" if holdout_fraction > 0 else "all"
    if centres not in CENTRE_SETS:
        raise ValueError(f"--centres must be one of {', '.join(CENTRE_SETS)}, got {centres!r}")
    if centres != "all" and holdout_fraction == 0.0:
        raise ValueError(f"--centres {centres} needs --holdout-fraction > 0 (the share of records held out as test "
                         "centres)")
    return centres


def register(app: typer.Typer) -> None:
    @app.command("pseudodata")
    def pseudodata_cmd(
        store: Path = typer.Option(..., "--store", help="Mock store (HDF5) written by `crnet scan`: the store the "
                                   "machines were trained on (Machine B: the scan its pseudo-data came from)."),
        out: Path = typer.Option(..., "--out", help="Pseudo-data store (HDF5) to write; an existing file is kept "
                                 "unless --overwrite, and the --store file itself is refused."),
        n_pseudo: int = typer.Option(1000, "--n-pseudo", help="Number of pseudo-spectra to make (`crnet "
                                     "pipeline`: n_test of its test section)."),
        seed: int = typer.Option(TEST_SEED_OFFSET, "--seed", help="Seed of the central-value draw and the "
                                 f"fluctuations; default {TEST_SEED_OFFSET}: `crnet pipeline`'s test seed for a run "
                                 "seed of 0, never the draws of `crnet train --seed 0` (Machine B's own pseudo-data). "
                                 "Give the training seed + that offset for machines trained with another seed."),
        dataset: str | None = typer.Option(None, "--dataset", help="Data set for re-profiling the pseudo-spectra "
                                           f"(default: the store's, else {DEFAULT_DATASET!r})."),
        centres: str | None = typer.Option(None, "--centres", help=f"Central values from {', '.join(CENTRE_SETS)} "
                                           "of the selected records: 'test' = the held-out part (needs "
                                           "--holdout-fraction), 'train' = the rest; default: test when "
                                           "--holdout-fraction > 0, else all."),
        holdout_fraction: float = typer.Option(0.0, "--holdout-fraction", help="Share of records held out as test "
                                               "centres (crnet.pseudodata.holdout_mask, a hash of the record index); "
                                               "give the fraction the machines were trained with (`crnet "
                                               "pipeline`: holdout_fraction of its train section). 0 = none held "
                                               "out (the paper's protocol)."),
        noise: str = typer.Option("paper", "--noise", help=f"Fluctuations: {', '.join(NOISE_MODELS)}."),
        pseudo_sigma: float = typer.Option(DEFAULT_PSEUDO_SIGMA, "--pseudo-sigma",
                                           help="Central values within this confidence level (3: Delta chi2 < 33.2)."),
        max_relative: float = typer.Option(PAPER_MAX_RELATIVE, "--max-relative", help="'paper' noise amplitude "
                                           "(relative, per energy bin and element)."),
        delta_low: float = typer.Option(ENVELOPE_DELTA[0], "--delta-low", help="'envelope' noise: Delta low."),
        delta_high: float = typer.Option(ENVELOPE_DELTA[1], "--delta-high", help="'envelope' noise: Delta high."),
        update_chi2: bool = typer.Option(False, "--update-chi2", help="Recompute the store's chi2 on --dataset."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Make test pseudo-data: the --test file of `crnet feedback` and `crnet evaluate`.

        Stored mocks within --pseudo-sigma of the store's chi2 minimum are the central values; --n-pseudo of them
        are drawn and fluctuated (paper Sec. 4.2, 4.6). Machine B's training pseudo-data are made by `crnet train
        --machine B` itself, not by this command.

        Test pseudo-data drawn from the training centres (--centres all with nothing held out, or --centres train)
        measure spectra the machines have learnt, with new noise: Machine B then meets its own central spectra
        again. To test on spectra no machine has seen, train with a hold-out fraction and give it here
        (--holdout-fraction F, --centres test by default). The feedback loop, which retrains on what it predicts,
        should instead get pseudo-data of the training centres (--centres train, another --seed), as `crnet
        pipeline` makes feedback_pseudo.h5."""
        from crnet.pseudodata import make_pseudodata

        try:
            check_output(out, overwrite=overwrite, inputs={"--store": store})  # before the work, not at the write
            check_input_file(store, "--store")
            if n_pseudo < 1:
                raise ValueError(f"--n-pseudo must be >= 1 (pseudo-spectra), got {n_pseudo}")
            centre_set = check_centres(centres, holdout_fraction)
            check_dataset_option(dataset)  # before the store is read
            if dataset is None:
                dataset = store_dataset(store)
            try:
                cfg = PseudoDataConfig(n_pseudo=n_pseudo, n_sigma=pseudo_sigma, noise=noise, max_relative=max_relative,
                                       envelope_delta=(delta_low, delta_high), dataset=dataset,
                                       update_chi2=update_chi2, seed=seed, centres=centre_set,
                                       holdout_fraction=holdout_fraction)
            except ValueError as exc:  # its field names, as this command's options
                raise ValueError(flag_message(str(exc), PSEUDO_FLAGS)) from None
            s = make_pseudodata(store, out, cfg, overwrite=overwrite)
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        info = {"out": str(s.path), "store": str(store), "n_pseudo": s.n_pseudo, "n_centres": s.n_selected,
                "centres": centre_set, "holdout_fraction": holdout_fraction, "seed": seed, "dataset": dataset,
                "noise": noise, "chi2_min": s.chi2_min, "delta_chi2": s.delta_chi2,
                "median_abs_relative_fluctuation": s.median_abs_relative_fluctuation,
                "max_abs_relative_fluctuation": s.max_abs_relative_fluctuation, "chi2_median": s.chi2_median}
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        typer.echo(f"{s.n_pseudo} pseudo-spectra in {s.path} from {s.n_selected} central spectra of {store} (centres "
                   f"{centre_set}, hold-out fraction {holdout_fraction}; chi2 < {s.chi2_min:.2f} + "
                   f"{s.delta_chi2:.2f}), seed {seed}, data set {dataset!r}")
        typer.echo(f"fluctuations |N'/N - 1| per pseudo-spectrum (largest bin): median "
                   f"{s.median_abs_relative_fluctuation:.2%}, max {s.max_abs_relative_fluctuation:.2%}; pseudo chi2 "
                   f"median {s.chi2_median:.2f}")
