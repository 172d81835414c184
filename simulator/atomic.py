"""Writing files so that a reader never sees half of one.

Every result servesim writes (tables, reports, baselines, cached sweep runs)
goes to a uniquely named temporary file beside its destination and is moved
into place with ``os.replace``, which is atomic on POSIX and Windows. A crash
or a kill therefore leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd

from simulator.errors import ConfigError


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Run ``write`` on a temporary path beside ``path``, then move it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # A fresh unique name (not mkstemp, whose 0600 mode would stick to the result).
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


# The temporary names atomic_write uses: ".<name>.<32 hex digits>.tmp".
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.tmp$")


def remove_temporaries(folder: Path) -> None:
    """Delete the temporary files a killed ``atomic_write`` left in ``folder`` (nothing else)."""
    if Path(folder).is_dir():
        for leftover in Path(folder).iterdir():
            if _TEMPORARY.match(leftover.name) and leftover.is_file():
                leftover.unlink(missing_ok=True)


def check_destination(folder: Path) -> Path:
    """``folder`` made absolute; a ``ConfigError`` if it can never become an output folder.

    Checked before any work: a symbolic link (replacing a run folder would replace the link,
    not its target) or a path under a plain file would otherwise fail only after the run.
    """
    folder = Path(folder).expanduser().absolute()
    if folder.is_symlink():
        raise ConfigError(f"{folder}: is a symbolic link; give the output folder itself")
    for ancestor in (folder, *folder.parents):
        if ancestor.exists():
            if ancestor != folder and not ancestor.is_dir():
                raise ConfigError(f"{folder}: {ancestor} is a file, not a folder; choose another output folder")
            break
    return folder


def staging_dir(destination: Path) -> Path:
    """A new empty folder beside ``destination`` to build it in, then ``os.replace`` it into place.

    Named like ``atomic_write``'s temporaries (and made with the umask's mode, not
    ``mkdtemp``'s 0700). Staging folders that a killed writer left for the same
    destination are deleted first, so kills do not pile up hidden copies.
    """
    destination = Path(destination)
    leftover_name = re.compile(rf"^\.{re.escape(destination.name)}\.[0-9a-f]{{32}}\.tmp$")
    for leftover in destination.parent.iterdir():
        if leftover_name.match(leftover.name) and leftover.is_dir():
            shutil.rmtree(leftover, ignore_errors=True)
    staging = destination.with_name(f".{destination.name}.{uuid.uuid4().hex}.tmp")
    staging.mkdir()
    return staging


def write_text(path: Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    return atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json(path: Path, value: Any) -> Path:
    """Write ``value`` as indented JSON to ``path`` atomically."""
    return write_text(path, json.dumps(value, indent=2) + "\n")


def write_csv(path: Path, frame: pd.DataFrame) -> Path:
    """Write ``frame`` without its index as CSV to ``path`` atomically."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))
