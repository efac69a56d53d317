"""The files a training writes beside its model file, their names, and the refusal to write one over an input.

``train(store, out, ...)`` (:mod:`crnet.machines.training`) writes ``out`` and its checkpoint (``<out>.ckpt``,
:func:`crnet.machines.checkpoint.checkpoint_path`); an ensemble also each member's ``<out>.member<k>`` with its
checkpoint and warm-start file; Machine B its pseudo-data ``<out>.pseudo.h5`` unless given pseudo-data.
"""

from __future__ import annotations

from pathlib import Path

from crnet.machines.checkpoint import checkpoint_path
from crnet.paths import same_file


def member_path(out: Path | str, k: int) -> Path:
    """Model file of ensemble member ``k`` beside the ensemble's file: ``<out>.member<k>``."""
    out = Path(out)
    return out.with_name(f"{out.name}.member{k}")


def pseudo_path(out: Path | str) -> Path:
    """Pseudo-data file made for Machine B beside the model file: ``<out>.pseudo.h5``."""
    out = Path(out)
    return out.with_name(out.name + ".pseudo.h5")


def written_files(out: Path | str, ensemble: int = 1) -> list[Path]:
    """Files :func:`crnet.machines.training.train` to ``out`` writes or replaces: ``out`` and its checkpoint; for
    an ensemble also each member's file, checkpoint and warm-start file (``<out>.member<k>``, ``.ckpt``,
    ``.init``). Machine B's pseudo-data file (:func:`pseudo_path`) is not listed: given as the store, it is read,
    not rewritten."""
    out = Path(out)
    files = [out, checkpoint_path(out)]
    for k in range(ensemble if ensemble > 1 else 0):
        member = member_path(out, k)
        files += [member, checkpoint_path(member), member.with_name(member.name + ".init")]
    return files


def refuse_writing_over_inputs(store: Path | str, out: Path | str, init_from: Path | str | None = None,
                               ensemble: int = 1) -> None:
    """ValueError naming both files when a file :func:`crnet.machines.training.train` to ``out`` writes
    (:func:`written_files`) is the training ``store`` or the ``init_from`` model file (links and relative paths
    resolved): the model file or a checkpoint would replace the input before, or while, it is read."""
    inputs = {"store": store, "init_from": init_from}
    for written in written_files(out, ensemble):
        for name, src in inputs.items():
            if src is not None and same_file(written, src):
                target = f"out {out}" if written == Path(out) else f"{written} (written beside out {out})"
                raise ValueError(f"train: {target} is the input {name} {src}: writing it would destroy that input; "
                                 "give another out")
