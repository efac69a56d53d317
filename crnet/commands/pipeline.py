"""`crnet pipeline CONFIG`: scan -> train A/B/check -> feedback -> evaluate -> measured data, resumable."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    @app.command("pipeline")
    def pipeline_cmd(
        config: Path = typer.Argument(..., help="TOML config (configs/pipeline_{ci,demo,paper}.toml)."),
        out: str | None = typer.Option(None, "--out", help="Override \\[run] out (output directory)."),
    ) -> None:
        """Run every stage of CONFIG; a re-run skips finished stages and resumes the interrupted one."""
        from crnet.pipeline import run_pipeline
        from crnet.pipeline_config import load_config
        from crnet.store import StoreError

        try:
            cfg = load_config(config, out)
            res = run_pipeline(cfg)
        except (ValueError, StoreError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(code=2) from None
        ran = [name for name in res["timings"] if name not in res["skipped"]]
        typer.echo(json.dumps({"out": str(cfg.out), "timings_s": res["timings"], "ran_now": ran,
                               "finished_before": res["skipped"], "resumed_after_a_kill": res["resumed"],
                               "killed_runs_s": res["killed_runs_s"]}, indent=2))
        if not ran:
            typer.echo("every stage was finished before: nothing ran (timings_s are those of the earlier runs)")
        for line in killed_run_lines(res["killed_runs_s"]):
            typer.echo(line)
        typer.echo(f"report: {cfg.out / 'evaluation' / 'report.md'}")


def killed_run_lines(killed_runs_s: dict[str, list[float | None]]) -> list[str]:
    """What the timings of stages resumed after a kill (or a failed run) include: one line per stage."""
    from crnet.stage_clock import HEARTBEAT_S

    lines = []
    for stage, runs in killed_runs_s.items():
        known = [t for t in runs if t is not None]
        parts = []
        if known:
            parts.append(f"includes {len(known)} earlier run(s) killed or failed ({sum(known):.1f} s; a kill loses "
                         f"at most {HEARTBEAT_S:.0f} s of its count)")
        if len(known) < len(runs):
            parts.append("leaves out at least 1 earlier run of unknown time (killed under code before session 20)")
        if parts:
            lines.append(f"timings_s of {stage} {' and '.join(parts)}")
    return lines
