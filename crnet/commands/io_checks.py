"""Checks on the files a command reads and writes, run before any long work.

Each raises a one-line ValueError naming the option and the file (the commands print it and exit with status
2), instead of a traceback at the final write, a silently replaced existing file, or an output written over
one of the command's own inputs (``crnet predict --out`` given the store it reads from).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from crnet.data import DATASETS
from crnet.paths import require_parent_dir, same_file


def check_output(path: Path | str, what: str = "--out", *, overwrite: bool = True,
                 inputs: Mapping[str, Path | str | None] | None = None) -> Path:
    """``path`` as a Path, or ValueError when it is a directory, its directory is missing, it is one of the
    command's ``inputs`` ({option: path}; always refused, whatever ``overwrite``), or it exists and
    ``overwrite`` is False (the default True leaves an existing file to the command, which documents what it does:
    replace it, or its own --resume / --overwrite rule)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a directory; give a file name")
    if path.is_symlink() and not path.exists():
        raise ValueError(f"{what} {path}: is a symbolic link to a missing file ({os.readlink(path)}); give a file "
                         "name")
    require_parent_dir(path, what)
    for option, src in (inputs or {}).items():
        if src is not None and same_file(path, src):
            raise ValueError(f"{what} {path} is the input {option}: writing it would destroy that input; give "
                             "another file name")
    if not overwrite and path.exists():
        raise ValueError(f"{what} {path}: file exists; pass --overwrite to replace it")
    return path


def check_input_file(path: Path | str, what: str) -> Path:
    """``path`` as a Path; ValueError when it is a directory (a missing file is left to the reader, whose
    message names the kind of file it wanted)."""
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{what} {path}: is a directory, not a file")
    return path


def check_model_archive(path: Path | str, what: str = "--model") -> Path:
    """``path`` as a Path; ValueError naming ``what`` when it is a directory, or a file that cannot be a model file
    written by `crnet train` (:func:`crnet.machines.modelfile.check_model_signature`, which
    :func:`~crnet.machines.modelfile.load_model` runs too, without the option's name)."""
    from crnet.machines.modelfile import check_model_signature  # imports torch: only when a model is read

    return check_model_signature(check_input_file(path, what), what)


def flag_message(message: str, flags: Mapping[str, str]) -> str:
    """A library config's ValueError message, which starts with the field it refuses (``n_sigma must be > 0, got
    -1.0``, ``FitConfig.max_evaluations must be >= 1, got 0``, ``dataset: unknown data set 'foo'; ...``), with that
    field replaced by the command's option (``flags``: field -> option); a message that starts with no field of
    ``flags`` is returned unchanged. The library keeps field names: it is used from Python too."""
    m = re.match(r"(?:[A-Z]\w*\.)?(\w+)\b", message)
    if m is None or m.group(1) not in flags:
        return message
    return flags[m.group(1)] + message[m.end():]


def check_dataset_option(name: str | None, option: str = "--dataset") -> str | None:
    """``name`` (None: not given) when it is a known data set, else ValueError naming ``option``, the value and
    the known names: checked before any work (`crnet fit -d foo` said so only after its first propagation)."""
    if name is not None and name not in DATASETS:
        raise ValueError(f"{option}: unknown data set {name!r}; known: {', '.join(DATASETS)}")
    return name


def store_dataset(store: Path) -> str:
    """The data set a store records (attribute 'dataset'; crnet.data.DEFAULT_DATASET when it has none), the default
    of a command's --dataset; ValueError naming the store, not --dataset, when this crnet does not know it."""
    from crnet.data import DEFAULT_DATASET
    from crnet.machines.data import read_store_info

    name = str(read_store_info(store).attrs.get("dataset", DEFAULT_DATASET))
    if name not in DATASETS:
        raise ValueError(f"--store {store} records the data set {name!r}, which this crnet does not know (known: "
                         f"{', '.join(DATASETS)}); pass --dataset")
    return name
