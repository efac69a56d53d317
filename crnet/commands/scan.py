"""`crnet scan --out mocks.h5 ...`: MCMC or design scan of the Table 1 box into a crash-safe mock store."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import typer

from crnet.commands.grid_options import with_grid_options
from crnet.commands.io_checks import check_dataset_option, check_input_file, check_output, flag_message
from crnet.scan.runner import SCAN_DESIGNS

if TYPE_CHECKING:
    from crnet.scan.models import GridConfig

SCAN_FLAGS: dict[str, str] = {
    "design": "--design", "n_chains": "--chains", "n_steps": "--steps", "n_points": "--points",
    "batch_size": "--batch", "seed": "--seed", "temperature": "--temperature", "dataset": "--dataset",
    "mode": "--mode", "backend": "--backend", "tol": "--tol", "max_steps": "--max-steps", "start_spread": "--spread",
    "proposal_scale": "--proposal-scale", "start": "--start",
}
"""crnet.scan.runner.ScanConfig fields -> this command's options (:func:`flag_message`)."""


def _parse_start(text: str | None) -> list[float] | None:
    """--start as 10 floats in PARAM_NAMES order, checked by crprop.params.PropagationParams (finite, inside the
    Table 1 prior box); BadParameter naming the first value that is not, with its allowed range and unit."""
    from crprop.params import PropagationParams

    if text is None:
        return None
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        raise typer.BadParameter(f"--start must be 10 comma-separated numbers, got {text!r}") from None
    if len(values) != 10:
        raise typer.BadParameter(f"--start needs the 10 PARAM_NAMES values, got {len(values)}")
    try:
        params = PropagationParams(*values).validate(check_prior=True)
    except ValueError as exc:
        # the library's message names the field, the value, the allowed range and unit; its hint at the Python
        # argument check_prior has no CLI counterpart and is dropped
        raise typer.BadParameter(f"--start {str(exc).split(' (pass check_prior=False', 1)[0]}") from None
    return params.as_vector().tolist()


def _load_fit(path: Path):
    """The `crnet fit` result at ``path``; ValueError naming --from-fit and the file (FitResult.load's checks)."""
    from crnet.scan.fit import FitResult

    check_input_file(path, "--from-fit")
    try:
        return FitResult.load(path)
    except ValueError as exc:
        raise ValueError(f"--from-fit {exc}") from None


def register(app: typer.Typer) -> None:
    @app.command("scan")
    @with_grid_options
    def scan_cmd(
        out: Path = typer.Option(..., "--out", "-o", help="Mock store to write (HDF5)."),
        chains: int = typer.Option(64, "--chains", "-k", help="MCMC chains K (lockstep; one solver call per step)."),
        steps: int = typer.Option(100, "--steps", "-n", help="Metropolis steps per chain after the start."),
        design: str = typer.Option("mcmc", "--design", help=f"One of: {', '.join(SCAN_DESIGNS)}."),
        points: int = typer.Option(0, "--points", help="Design points (uniform/lhs/sobol/gaussian)."),
        batch: int = typer.Option(0, "--batch", help="Design points per solver call (default: --chains)."),
        backend: str = typer.Option("auto", "--backend", help="Solver backend: auto, numpy, numba, cupy."),
        mode: str = typer.Option("fast", "--mode", help="Solver mode: fast, galprop, exact (galprop: not for mcmc, "
                                  "its fixed ladder never converges)."),
        tol: float | None = typer.Option(None, "--tol", help="Solver relative residual (default crprop's)."),
        max_steps: int | None = typer.Option(None, "--max-steps", help="Solver iteration cap per species."),
        dataset: str = typer.Option("paper", "--dataset", "-d", help="Likelihood data set."),
        temperature: float = typer.Option(10.0, "--temperature", help="T in log p = -chi2_tot / (2 T) (paper: 10)."),
        seed: int = typer.Option(0, "--seed", help="Base random seed."),
        start: str | None = typer.Option(None, "--start", help="Start / Gaussian centre: 10 comma-separated "
                                         "values in PARAM_NAMES order (D0 [1e28 cm^2/s], ..., breaks in MV)."),
        from_fit: Path | None = typer.Option(None, "--from-fit", help="Start the MCMC chains from a `crnet fit` "
                                             "result: chain 0 at its best fit, the others from N(best, T C)."),
        spread: float = typer.Option(0.05, "--spread", help="Start spread / Gaussian sigma, fraction of box width."),
        proposal_scale: float = typer.Option(0.02, "--proposal-scale", help="Initial proposal std, fraction of box."),
        freeze_after: int | None = typer.Option(None, "--freeze-after", help="Freeze the adaptive proposal after "
                                                "this many steps (default: diminishing adaptation)."),
        warm_start: bool = typer.Option(True, "--warm-start/--no-warm-start", help="Warm-start the solver from "
                                        "each chain's current state (mode fast)."),
        workers: int | None = typer.Option(None, "--workers", help="Run shards on an embedded Dask LocalCluster."),
        scheduler: str | None = typer.Option(None, "--scheduler", help="Run shards on this Dask scheduler."),
        shards: int | None = typer.Option(None, "--shards", help="Number of shards (default: workers)."),
        resume: bool = typer.Option(False, "--resume", help="Continue from the last complete batch of --out."),
        overwrite: bool = typer.Option(False, "--overwrite", help="Replace an existing --out."),
        progress: bool = typer.Option(True, "--progress/--no-progress", help="Show the progress bar."),
        grid: GridConfig | None = None,
    ) -> None:
        """Scan the Table 1 prior box (paper Sec. 4.1) and store every evaluated model with its spectra."""
        from crnet.scan.models import GridConfig
        from crnet.scan.runner import ScanConfig, run_scan
        from crnet.scan.sampler import SamplerConfig
        from crnet.store import StoreError

        conflicts = [
            (workers is not None and scheduler is not None, "give --workers or --scheduler, not both"),
            (resume and overwrite, "give --resume (continue --out) or --overwrite (replace it), not both"),
            (shards is not None and workers is None and scheduler is None,
             "--shards needs --workers or --scheduler (a scan without them runs in this process, unsharded)"),
            (design == "mcmc" and points != 0, "--points sets the size of a uniform/lhs/sobol/gaussian design; "
             "an mcmc scan runs --chains chains for --steps steps"),
            (design in SCAN_DESIGNS and design != "mcmc" and points <= 0,  # was "design 'sobol' needs n_points > 0"
             f"--design {design} needs --points N > 0 (the design's size)"),
            (from_fit is not None and design != "mcmc",  # was "start_cov needs design 'mcmc' and a start"
             f"--from-fit needs --design mcmc (it starts the MCMC chains), got --design {design}"),
        ]
        for bad, message in conflicts:
            if bad:
                typer.echo(f"error: {message}", err=True)
                raise typer.Exit(code=2)
        try:
            check_output(out, inputs={"--from-fit": from_fit})  # --resume / --overwrite: the store's own rules
            check_dataset_option(dataset)
            start_values, start_cov = _parse_start(start), None
            if from_fit is not None:
                if start is not None:
                    raise ValueError("give --start or --from-fit, not both")
                fit = _load_fit(from_fit)
                fit.check_setup((grid or GridConfig()).settings(), dataset)
                if not fit.success:
                    typer.echo(f"warning: --from-fit {from_fit}: the fit did not converge ({fit.message}); the chains "
                               "start from its last point", err=True)
                start_values, start_cov = fit.scan_start(temperature)
            try:
                cfg = ScanConfig(design=design, n_chains=chains, n_steps=steps, n_points=points, batch_size=batch,
                                 seed=seed, temperature=temperature, dataset=dataset, mode=mode, backend=backend,
                                 tol=tol, max_steps=max_steps, warm_start=warm_start, start=start_values,
                                 start_spread=spread, start_cov=start_cov, proposal_scale=proposal_scale, grid=grid,
                                 sampler=SamplerConfig(freeze_after=freeze_after))
            except ValueError as exc:  # its field names, as this command's options
                raise ValueError(flag_message(str(exc), SCAN_FLAGS)) from None
            if workers is None and scheduler is None:
                s = run_scan(out, cfg, resume=resume, overwrite=overwrite, progress=progress)
                acc = "" if s.acceptance_rate is None else f", acceptance {s.acceptance_rate:.3f}"
                # resumed_from: the records the store held when this run started (0: a fresh start, not a resume)
                start = f", resumed after {s.resumed_from} records" if s.resumed_from else ""
                bad = (f"; {s.n_nonconverged} of the {s.new_records} new records NOT converged (solver tolerance "
                       "missed: raise --max-steps or loosen --tol)" if s.n_nonconverged else "")
                best = (f"best chi2_tot {s.best_chi2:.2f} (converged records)" if np.isfinite(s.best_chi2)
                        else "no converged record")
                typer.echo(f"{s.records} records in {out} ({s.new_records} new records{start}) in {s.elapsed_s:.1f} "
                           f"s: {s.models_per_s:.2f} models/s{acc}, {best}{bad}")
            else:
                from crnet.scan.distributed import run_distributed

                d = run_distributed(out, cfg, n_workers=workers, scheduler=scheduler, n_shards=shards,
                                    resume=resume, overwrite=overwrite, progress=progress)
                new = sum(x["new_records"] for x in d.shard_summaries)
                typer.echo(f"{d.records} records in {out} ({new} new records) from {len(d.shards)} shards in "
                           f"{d.elapsed_s:.1f} s")
        except (StoreError, ValueError, RuntimeError) as exc:
            msg = str(exc)
            if "file exists" in msg:
                msg += " - pass --resume to continue it or --overwrite to replace it"
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(code=2) from None
