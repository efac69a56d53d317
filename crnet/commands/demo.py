"""`crnet demo`: README's main job (crnet.demo)."""

from __future__ import annotations

from pathlib import Path

import typer

from crnet.commands.io_checks import check_output


def check_figure_suffix(out: Path) -> None:
    """ValueError naming --out unless its suffix is a format matplotlib writes: checked before the propagation, not
    after it (walk-through by helper-87, session 21: `--out demo.txt` was refused only after the
    propagation, 5.6-5.8 s of the command's 8 s on the 2-core CPU in session 23: `crnet demo --out d.png`, numba,
    two runs, three helpers' work beside it)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    formats = FigureCanvasAgg(Figure()).get_supported_filetypes()
    if out.suffix.lstrip(".").lower() not in formats:
        raise ValueError(f"--out {out}: a figure file must end in one of {', '.join('.' + f for f in sorted(formats))}")


def register(app: typer.Typer) -> None:
    @app.command()
    def demo(
        out: Path = typer.Option(Path("crnet_demo.png"), "--out", help="figure to write, its format from the "
                                 "suffix (png, pdf, svg, ...; an existing file is replaced)"),
        backend: str = typer.Option("auto", "--backend", help="auto | numpy | numba | cupy"),
        dataset: str = typer.Option("paper", "--dataset", help="measured data set (crnet data list)"),
    ) -> None:
        """Propagate the paper's galdef, profile the normalisations against the data, plot the fit."""
        from crnet.data import DATASETS
        from crnet.demo import run_demo
        from crprop.backends import get_backend

        try:  # the cheap checks first, not after the propagation
            if dataset not in DATASETS:
                raise ValueError(f"--dataset: unknown data set {dataset!r}; known: {', '.join(DATASETS)}")
            get_backend(backend)
            check_output(out)
            check_figure_suffix(out)
            res = run_demo(out, backend=backend, dataset=dataset)
        except ValueError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        rec = res.fit.to_records()[0]
        typer.echo(f"chi2_tot = {rec['chi2_tot']:.1f} for {rec['n_points']} points (chi2_scan = "
                   f"{rec['chi2_scan']:.1f}); q_C = {rec['q_C']:.3f}, xi_Li = {rec['xi_Li']:.3f}, "
                   f"xi_Be = {rec['xi_Be']:.3f}, qO/qC = {rec['qO_over_qC']:.3f}")
        typer.echo(f"residual {res.spectra.residual[0]:.1e} (converged); {res.wall_s:.1f} s; figure -> {res.figure}")
