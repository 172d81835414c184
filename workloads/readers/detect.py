"""``format: auto``: choosing a reader from the file's first line.

The first line of the (decompressed) file is either a JSON object, whose keys
are compared with the JSONL formats, or a CSV header, compared with the CSV
formats. Exactly one built-in format must match; otherwise the error names
the file, what its first line holds, and the formats to choose from, rather
than guessing.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

from simulator.errors import TraceError, located
from workloads.config_trace import TraceConfig
from workloads.readers.base import Head, TraceReader
from workloads.readers.files import first_line
from workloads.registry import TRACE_READERS


def choose_reader(config: TraceConfig, path: Path) -> TraceReader:
    """The reader ``config.format`` names, or the one format ``auto`` recognises in ``path``."""
    if config.format != "auto":
        return TRACE_READERS.get(config.format)(config)
    head = read_head(path)
    if config.columns is not None:
        return TRACE_READERS.get("jsonl" if head.kind == "jsonl" else "csv")(config)
    matches = [name for name in TRACE_READERS.names() if TRACE_READERS.get(name).sniff(head)]
    if len(matches) == 1:
        return TRACE_READERS.get(matches[0])(config)
    shown = ", ".join(head.names[:8]) + (", ..." if len(head.names) > 8 else "")
    found = f"matches {', '.join(matches)}" if matches else "matches no known format"
    raise TraceError(located(path, "line 1", f"cannot tell the trace format: the {head.kind} "
                             f"{'header' if head.kind == 'csv' else 'keys'} ({shown}) {found}; set "
                             f"workload.trace.format to one of {', '.join(TRACE_READERS.names())} "
                             "(csv and jsonl with trace.columns)"))


def read_head(path: Path) -> Head:
    """The kind and column names of ``path`` from its first line."""
    line = first_line(path).lstrip("\ufeff")
    if not line.strip():
        raise TraceError(located(path, "", "file is empty (no header or first record)"))
    if line.lstrip().startswith("{"):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TraceError(located(path, "line 1", f"not valid JSON ({exc.msg})")) from None
        if isinstance(record, dict):
            return Head("jsonl", tuple(record))
    return Head("csv", tuple(name.strip() for name in next(csv.reader([line]))))
