"""Opening trace files: transparent decompression and one-line errors for unreadable files.

Compression is chosen by suffix (``.gz``, ``.bz2``, ``.xz``), the same way
pandas infers it for CSV files, so ``trace.jsonl.gz`` and ``trace.csv.gz``
both just work. A missing file, a folder, a truncated or corrupt archive and
undecodable text all become a ``TraceError`` naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from simulator.errors import TraceError, located

_OPENERS = {".gz": gzip.open, ".bz2": bz2.open, ".xz": lzma.open}

# What truncated archives and bad bytes raise: EOFError, BadGzipFile (an OSError),
# zlib.error, LZMAError, and UnicodeDecodeError (a ValueError).
READ_ERRORS = (OSError, EOFError, ValueError, zlib.error, lzma.LZMAError, zipfile.BadZipFile)


def open_text(path: Path) -> IO[str]:
    """``path`` opened for reading text, decompressed by suffix."""
    opener = _OPENERS.get(path.suffix.lower())
    if opener is None:
        return open(path, encoding="utf-8", newline="")
    return opener(path, "rt", encoding="utf-8", newline="")


@contextmanager
def reading(path: Path) -> Iterator[None]:
    """Turn the ways a file can fail to read into one-line ``TraceError``s naming it."""
    try:
        yield
    except FileNotFoundError:
        raise TraceError(located(path, "", "file not found")) from None
    except IsADirectoryError:
        raise TraceError(located(path, "", "is a folder, not a file")) from None
    except READ_ERRORS as exc:
        raise TraceError(located(path, "", f"cannot read file ({one_line(exc)})")) from None


def first_line(path: Path) -> str:
    """The first line of the (decompressed) file, without its line break; empty for an empty file."""
    with reading(path), open_text(path) as handle:
        return handle.readline().rstrip("\r\n")


def one_line(exc: BaseException) -> str:
    """An exception as ``Type: message`` on one line."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
