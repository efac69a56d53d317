"""`crnet predict --model model.pt --spectra FILE.h5 [--out predictions.h5|.csv]`: apply a trained model."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from crnet.commands.io_checks import check_input_file, check_model_archive, check_output
from crnet.data import DEFAULT_DATASET
from crnet.store import StoreError


def register(app: typer.Typer) -> None:
    @app.command("predict")
    def predict_cmd(
        model: Path = typer.Option(..., "--model", help="Model file written by `crnet train`."),
        spectra: Path = typer.Option(..., "--spectra", help="Mock store, pseudo-data or spectra file (HDF5)."),
        out: Path | None = typer.Option(None, "--out", help="Write predictions to .h5/.hdf5 or .csv (parameters in "
                                        "the units of their names: D0 in 1e28 cm^2/s, v_A km/s, z_h kpc, breaks MV); "
                                        "an existing file is kept unless --overwrite."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out file."),
        dataset: str | None = typer.Option(None, "--dataset", help="Data set profiling q_C of spectra files without "
                                           "normalisations (default: the model's, else "
                                           f"{DEFAULT_DATASET!r})."),
        skip_invalid: bool = typer.Option(False, "--skip-invalid", help="Leave out records with unusable spectra "
                                          "(or, in a spectra file, a solve that did not converge); fails when it "
                                          "leaves out every record."),
        device: str = typer.Option("cpu", "--device", help="cpu or cuda."),
        as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    ) -> None:
        """Predict the 10 Table 1 parameters (or, for a Check Machine, the inside-region probability). Exit status 2
        for bad input, 1 when --skip-invalid leaves out every record (nothing is written)."""
        from crnet.machines.inference import model_meta, predict_file, prediction_suffix, summary, write_predictions
        from crnet.machines.modelfile import Predictor  # torch is imported only when predicting

        try:
            if out is not None:
                check_output(out, overwrite=overwrite, inputs={"--model": model, "--spectra": spectra})
                prediction_suffix(out, "--out")  # write_predictions' own rule, before the predictions, not after
            check_input_file(spectra, "--spectra")
            predictor = Predictor.load(check_model_archive(model, "--model"), device)
            pred = predict_file(predictor, spectra, dataset=dataset, skip_invalid=skip_invalid)
            if pred.index.size == 0:
                # every record skipped: a header-only file and exit status 0 read as a successful prediction
                # (walk-through by helper-87, session 21); status 1, as for a run that found nothing, nothing written
                why = "non-finite parameters" if predictor.model.is_check else "unusable spectra or not converged"
                typer.echo(f"error: --spectra {spectra}: all {pred.skipped.size} records were skipped ({why}); "
                           "nothing predicted" + (f", {out} not written" if out is not None else ""), err=True)
                raise typer.Exit(code=1)
            if out is not None:
                write_predictions(pred, out, {**model_meta(model), "spectra": str(spectra.resolve())})
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        info = summary(pred)
        if as_json:
            typer.echo(json.dumps(info, indent=2))
            return
        typer.echo(f"{info['n_predicted']} records predicted, {info['n_skipped']} skipped (unusable spectra or not "
                   "converged)"
                   + (f"; written to {out}" if out is not None else ""))
        if "frac_outside_box_any" in info:
            typer.echo(f"share of predictions outside the prior box: {info['frac_outside_box_any']:.3%}")
            for name, frac in info["frac_outside_box"].items():
                err = info.get("rel_err_median", {}).get(name)
                typer.echo(f"  {name:<16} outside box {frac:8.3%}"
                           + (f"   median |rel err| vs stored {err:.4f}" if err is not None else ""))
        if "frac_classified_inside" in info:
            typer.echo(f"share classified inside the region: {info['frac_classified_inside']:.3%}")
