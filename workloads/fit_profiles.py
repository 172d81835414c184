"""Regenerate ``workloads/profile_tables.py`` from the public traces it summarises.

The built-in length profiles ship as quantile tables, not data: for each
source file we keep the prompt and output lengths at a fixed grid of
percentiles (``PERCENTS``), which is enough to sample them back by inverse CDF.
Run from the repository root::

    python -m workloads.fit_profiles ../shared/data            # rewrite the tables
    python -m workloads.fit_profiles ../shared/data --check    # exit 1 if they differ

The quantiles use numpy's ``inverted_cdf`` method, so every entry is a length
that occurs in the data (the smallest x with F(x) >= p).
"""

from __future__ import annotations

import argparse
import sys
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

# Percentiles kept; the extra points in both tails keep the heavy right tail
# (long prompts and outputs dominate KV usage) from being flattened.
PERCENTS: tuple[float, ...] = (0.0, 0.1, 0.5, *map(float, range(1, 100)), 99.5, 99.9, 100.0)

TABLES_PATH = Path(__file__).with_name("profile_tables.py")


@dataclass(frozen=True)
class ProfileSource:
    """One built-in profile: which file and columns it is fitted to, and its attribution."""

    name: str
    relative_path: str
    prompt_column: str
    output_column: str
    attribution: str


_SPLITWISE = "CC-BY-4.0; Patel et al., Splitwise, ISCA 2024"

SOURCES = (
    ProfileSource("azure-conv-2023", "azure_llm_2023/AzureLLMInferenceTrace_conv.csv",
                  "ContextTokens", "GeneratedTokens",
                  f"Azure LLM inference trace 2023, conversation ({_SPLITWISE})"),
    ProfileSource("azure-code-2023", "azure_llm_2023/AzureLLMInferenceTrace_code.csv",
                  "ContextTokens", "GeneratedTokens",
                  f"Azure LLM inference trace 2023, coding ({_SPLITWISE})"),
    ProfileSource("arxiv-summarization",
                  "vidur_traces/arxiv_summarization_stats_llama2_tokenizer_filtered_v2.csv",
                  "num_prefill_tokens", "num_decode_tokens",
                  "arXiv summarization lengths, Llama-2 tokenizer, from microsoft/vidur (MIT)"),
)


def fit_quantiles(values: np.ndarray) -> tuple[int, ...]:
    """Lengths at ``PERCENTS``, each one a value that occurs in ``values``."""
    quantiles = np.quantile(values, np.asarray(PERCENTS) / 100.0, method="inverted_cdf")
    return tuple(int(q) for q in quantiles)


def fit_source(data_dir: Path, source: ProfileSource) -> dict[str, Any]:
    """Read one source file and return its table entry."""
    frame = pd.read_csv(data_dir / source.relative_path, usecols=[source.prompt_column, source.output_column])
    return {
        "source": f"{source.relative_path} ({source.prompt_column}, {source.output_column}), "
                  f"{len(frame):,} rows; {source.attribution}",
        "prompt_tokens": fit_quantiles(frame[source.prompt_column].to_numpy()),
        "output_tokens": fit_quantiles(frame[source.output_column].to_numpy()),
    }


def render(tables: dict[str, dict[str, Any]]) -> str:
    """The full text of ``profile_tables.py`` for the given tables."""
    lines = [
        '"""Quantile tables of the built-in length profiles (generated; do not edit by hand).',
        "",
        "Regenerate with ``python -m workloads.fit_profiles ../shared/data``; see that module",
        "for the method. Each tuple holds lengths in tokens at the percentiles in ``PERCENTS``.",
        '"""',
        "",
        f"PERCENTS = {_tuple_literal(PERCENTS, indent=4)}",
        "",
        "TABLES = {",
    ]
    for name, table in tables.items():
        lines.append(f"    {name!r}: {{")
        lines.append(f"        'source': {_string_literal(table['source'], indent=12)},")
        for key in ("prompt_tokens", "output_tokens"):
            lines.append(f"        {key!r}: {_tuple_literal(table[key], indent=12)},")
        lines.append("    },")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _string_literal(text: str, indent: int) -> str:
    # Implicitly concatenated pieces keep long attributions under 100 columns.
    pieces = textwrap.wrap(text, width=96 - indent, drop_whitespace=False)
    pad = " " * indent
    return "(\n" + "\n".join(pad + repr(piece) for piece in pieces) + "\n" + " " * (indent - 4) + ")"


def _tuple_literal(values: Sequence[float], indent: int) -> str:
    body = ", ".join(repr(v) for v in values)
    wrapped = textwrap.wrap(body, width=100 - indent, break_on_hyphens=False)
    pad = " " * indent
    return "(\n" + "\n".join(pad + line for line in wrapped) + ",\n" + " " * (indent - 4) + ")"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path, help="the shared data folder (with azure_llm_2023/)")
    parser.add_argument("--check", action="store_true", help="compare with the shipped tables, write nothing")
    args = parser.parse_args(argv)
    text = render({source.name: fit_source(args.data_dir, source) for source in SOURCES})
    if args.check:
        same = TABLES_PATH.read_text(encoding="utf-8") == text
        print(f"{TABLES_PATH}: {'up to date' if same else 'differs from the data'}")
        return 0 if same else 1
    TABLES_PATH.write_text(text, encoding="utf-8")
    print(f"wrote {TABLES_PATH}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
