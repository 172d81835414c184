"""``servesim trace stats FILE``: what a trace holds, before replaying it.

Prints the request count, span, rate, burstiness (CV of inter-arrival gaps),
prompt and output length quantiles, the share of prompt tokens a perfect
prefix cache would serve (traces with prefix hashes) and sessions (traces
with session ids). The file is streamed, so week-long traces work; a bad row
stops it with the same one-line error a replay would give.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from simulator.errors import ConfigError


def register(commands) -> argparse.ArgumentParser:
    """Add the ``trace`` subcommand (with its ``stats`` action) to ``commands`` and return its parser."""
    parser = commands.add_parser("trace", help="inspect a trace file")
    actions = parser.add_subparsers(dest="trace_action", required=True, metavar="ACTION")
    stats = actions.add_parser("stats", help="rate, burstiness, lengths, prefix sharing and sessions of a trace")
    stats.add_argument("file", type=Path, help="trace file (.gz, .bz2, .xz read transparently)")
    stats.add_argument("--format", default="auto", help="trace format (default: auto; see servesim list traces)")
    stats.add_argument("--column", action="append", default=[], metavar="ROLE=NAME",
                       help="column of a csv/jsonl trace, e.g. arrival_s=t or time_unit=ms (repeatable)")
    stats.add_argument("--sort", action="store_true", help="sort rows out of time order instead of failing")
    stats.add_argument("--block-size", type=int, default=16, help="prefix-cache block size in tokens (default 16)")
    stats.add_argument("--json", action="store_true", help="print JSON instead of text")
    stats.add_argument("--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks for errors")
    stats.set_defaults(handler=_stats)
    return parser


def _stats(args: argparse.Namespace) -> int:
    import pydantic

    from simulator.yaml_loading import condense_validation_error
    from workloads.config_trace import TraceConfig
    from workloads.trace_stats import format_statistics, trace_statistics

    if args.block_size <= 0:
        raise ConfigError("--block-size: expected a positive number of tokens")
    raw: dict = {"path": str(args.file), "format": args.format, "on_unsorted": "sort" if args.sort else "error"}
    if args.column:
        raw["columns"] = dict(_pair(item) for item in args.column)
    try:
        config = TraceConfig.model_validate(raw)
    except pydantic.ValidationError as err:
        raise ConfigError(condense_validation_error(err, "servesim trace stats")) from None
    found = trace_statistics(config, args.file, args.block_size)
    print(json.dumps(found, indent=2) if args.json else format_statistics(found))
    return 0


def _pair(item: str) -> tuple[str, str]:
    key, sep, value = item.partition("=")
    if not sep or not key or not value:
        raise ConfigError(f"--column {item}: expected ROLE=NAME")
    return key, value
