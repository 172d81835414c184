"""Fuzzing every trace reader with damaged copies of real trace files.

The heads of the real traces in ../shared/data (or built-in samples of the
same formats when that folder is absent) are damaged at random: truncated
anywhere, lines dropped, duplicated or swapped, fields removed or added, cells
replaced by hostile values (NaN, infinities, negative, fractional and huge
numbers, text, JSON of the wrong type), stray bytes that are not UTF-8,
another encoding, a byte-order mark, CRLF line ends, and compression (gzip,
bz2, xz) that may itself be truncated or garbage. Replaying the result, or
``servesim trace stats`` on it, either gives well-formed requests or raises a
``ServesimError`` with one line naming the file.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import math
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from fuzz_inputs import fuzz_settings, outcome
from simulator.engine.request import RequestSpec
from simulator.engine.session import SessionSpec
from simulator.errors import ServesimError
from workloads import WorkloadConfig, build_workload
from workloads.config_trace import TraceConfig
from workloads.trace_stats import trace_statistics

SHARED = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()
HEAD_LINES = 40


def _sample(name: str, fallback: str) -> str:
    """The first lines of a real trace in ../shared/data, or ``fallback`` when it is absent."""
    path = SHARED / name
    if not path.is_file():
        return fallback
    with open(path, encoding="utf-8", newline="") as handle:
        return "".join(line for _, line in zip(range(HEAD_LINES), handle))


SAMPLES: dict[str, tuple[str, str, dict[str, Any]]] = {
    # format: (file suffix, text, extra trace options)
    "azure": (".csv", _sample("azure_llm_2023/AzureLLMInferenceTrace_code.csv",
                              "TIMESTAMP,ContextTokens,GeneratedTokens\n"
                              "2023-11-16 18:17:03.9799600,4808,10\n2023-11-16 18:17:04.0319600,3180,8\n"
                              "2023-11-16 18:17:05.0319600+00:00,110,27\n"), {}),
    "burstgpt": (".csv", _sample("burstgpt/BurstGPT_3_slice400.csv",
                                 "Timestamp,Session ID,Elapsed time,Model,Request tokens,Response tokens,"
                                 "Total tokens,Log Type\n19440110.0,1722ac82,43,GPT-4,906,446,1352,Conversation log\n"
                                 "19440161.0,,2,ChatGPT,36,0,36,API log\n19440162.0,d598,2,ChatGPT,36,29,65,"
                                 "Conversation log\n"), {"transforms": {"filter": {"Model": ["GPT-4", "ChatGPT"]}}}),
    "mooncake": (".jsonl", _sample("mooncake/conversation_trace.jsonl",
                                   '{"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1]}\n'
                                   '{"timestamp": 3, "input_length": 732, "output_length": 490, "hash_ids": [0, 14]}\n'
                                   '{"timestamp": 9, "input_length": 72, "output_length": 79, "hash_ids": [5]}\n'),
                 {}),
    "vidur": (".csv", _sample("vidur_traces/splitwise_code.csv",
                              "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,4808,10\n0.052,3180,8\n"
                              "0.3,110,27\n"), {}),
    "splitwise": (".csv", _sample("splitwise_sim/test_trace.csv",
                                  "request_id,request_type,application_id,arrival_timestamp,batch_size,prompt_size,"
                                  "token_size\n0,2,0,1,1,4096,32\n1,2,0,3,1,2048,8\n2,2,0,4,1,20,8\n"), {}),
    "csv": (".csv", _sample("vidur_traces/splitwise_code.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,4808,10\n0.052,3180,8\n"),
            {"columns": {"arrival_s": "arrived_at", "prompt_tokens": "num_prefill_tokens",
                         "output_tokens": "num_decode_tokens", "time_unit": "ms"}}),
    "jsonl": (".jsonl", _sample("mooncake/conversation_trace.jsonl", '{"timestamp": 0, "input_length": 5, '
                                '"output_length": 5, "hash_ids": [1]}\n'),
              {"columns": {"arrival_s": "timestamp", "prompt_tokens": "input_length", "output_tokens": "output_length",
                           "time_unit": "ms", "prefix_hashes": "hash_ids", "prefix_block_tokens": 512}}),
}
HOSTILE_CELLS = ["", "nan", "NaN", "inf", "-inf", "-1", "0", "1.5", "1e400", "99999999999999999999999",
                 "9223372036854775808", "-0", "abc", "true", "null", '"', "'", "2023-13-45 25:61:00", "1,2",
                 "[1, 2]", '{"a": 1}', "[1.5]", '["x"]', "[-1]", "[]", "\x00", "é", "𝕏", " 7 ", "0x1A", "1_000"]


@st.composite
def damaged(draw: st.DrawFn, text: str) -> bytes:
    """``text`` damaged 1-4 times, encoded, and perhaps compressed (and that perhaps damaged too)."""
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    lines = text.splitlines(keepends=True)
    for _ in range(draw(st.integers(1, 4))):
        if not lines:
            lines = [draw(st.sampled_from(HOSTILE_CELLS)) + "\n"]
        index = rng.randrange(len(lines))
        operation = draw(st.sampled_from(["cell", "cell", "cell", "drop", "duplicate", "swap", "drop_field",
                                          "add_field", "truncate_line", "blank", "header", "json_value"]))
        line = lines[index]
        separator = "," if "," in line else " "
        fields = line.rstrip("\r\n").split(separator)
        if operation == "cell":
            fields[rng.randrange(len(fields))] = draw(st.sampled_from(HOSTILE_CELLS))
            lines[index] = separator.join(fields) + "\n"
        elif operation == "drop":
            del lines[index]
        elif operation == "duplicate":
            lines.insert(index, line)
        elif operation == "swap":
            other = rng.randrange(len(lines))
            lines[index], lines[other] = lines[other], lines[index]
        elif operation == "drop_field":
            del fields[rng.randrange(len(fields))]
            lines[index] = separator.join(fields) + "\n"
        elif operation == "add_field":
            fields.insert(rng.randrange(len(fields) + 1), draw(st.sampled_from(HOSTILE_CELLS)))
            lines[index] = separator.join(fields) + "\n"
        elif operation == "truncate_line":
            lines[index] = line[: rng.randrange(len(line) + 1)]
        elif operation == "blank":
            lines[index] = draw(st.sampled_from(["\n", "\r\n", " \n", ",,,\n", "{}\n", "[]\n", "null\n"]))
        elif operation == "header":
            lines[0] = draw(st.sampled_from(["", "\ufeff", "a,b,c\n", '{"a": 1}\n'])) + lines[0]
        elif operation == "json_value" and '":' in line:
            key_end = line.index('":') + 2
            rest = line[key_end:]
            stop = min([i for i in (rest.find(","), rest.find("}")) if i >= 0] or [len(rest)])
            lines[index] = line[:key_end] + " " + draw(st.sampled_from(
                ["null", "true", "-5", "1.5", "1e999", '"12"', "[1, [2]]", '{"x": 1}', "NaN", "Infinity",
                 "[1.0, 2]", "[true]", '"2023-01-01"'])) + rest[stop:]
    text = "".join(lines)
    if draw(st.booleans()):
        text = text.replace("\n", "\r\n")
    encoding = draw(st.sampled_from(["utf-8", "utf-8", "utf-8", "utf-8-sig", "utf-16", "latin-1", "cp1252"]))
    data = text.encode(encoding, errors="replace")
    if draw(st.integers(0, 4)) == 0:  # stray bytes that are not UTF-8, or a cut anywhere
        position = rng.randrange(len(data) + 1)
        data = data[:position] + draw(st.sampled_from([b"\xff", b"\xc3", b"\x00", b"\xed\xa0\x80", b"\x80\x80"])) \
            + data[position:]
    if draw(st.integers(0, 4)) == 0:
        data = data[: rng.randrange(len(data) + 1)]
    return data


@st.composite
def compressed(draw: st.DrawFn, data: bytes) -> tuple[str, bytes]:
    """(suffix, bytes): plain, or compressed by gzip, bz2 or xz and perhaps truncated, flipped or replaced."""
    suffix = draw(st.sampled_from(["", "", "", ".gz", ".bz2", ".xz"]))
    if not suffix:
        return suffix, data
    data = {".gz": gzip.compress, ".bz2": bz2.compress, ".xz": lzma.compress}[suffix](data)
    damage = draw(st.sampled_from(["none", "none", "truncate", "flip", "garbage", "plain"]))
    rng = random.Random(draw(st.integers(0, 2**32 - 1)))
    if damage == "truncate":
        data = data[: rng.randrange(len(data))]
    elif damage == "flip":
        buffer = bytearray(data)
        for _ in range(3):
            position = rng.randrange(len(buffer))
            buffer[position] ^= 1 << rng.randrange(8)
        data = bytes(buffer)
    elif damage == "garbage":
        data = draw(st.binary(max_size=64))
    elif damage == "plain":
        data = b"arrived_at,num_prefill_tokens,num_decode_tokens\n0,1,1\n"  # not compressed at all
    return suffix, data


def check_specs(items: list) -> None:
    """Requests a replay hands to the engine are well formed."""
    arrivals = [item.arrival_s for item in items]
    assert all(math.isfinite(t) and t >= 0 for t in arrivals), arrivals[:5]
    assert all(b >= a for a, b in zip(arrivals, arrivals[1:])), "not in arrival order"
    for item in items:
        calls = item.calls if isinstance(item, SessionSpec) else [item]
        for call in calls:
            spec = call if isinstance(call, RequestSpec) else getattr(call, "spec", call)
            prompt, output = getattr(spec, "prompt_tokens", 1), getattr(spec, "output_tokens", 1)
            assert isinstance(prompt, (int, np.integer)) and prompt >= 1, spec
            assert isinstance(output, (int, np.integer)) and output >= 1, spec


def replay(folder: Path, name: str, fmt: str, options: dict[str, Any]) -> None:
    path = folder / name
    names = lambda message: message.startswith(str(path)) or str(path) in message  # noqa: E731
    trace = {"path": name, "format": fmt, **options}
    config = outcome(lambda: WorkloadConfig.model_validate({"trace": trace}) and None)
    assert config is None, "the trace options of the test are valid"
    workload = outcome(lambda: build_workload(WorkloadConfig.model_validate({"trace": trace}),
                                              np.random.default_rng(0), folder, 131_072), names=names)
    if not isinstance(workload, ServesimError):
        items = outcome(lambda: list(workload), names=names)
        if not isinstance(items, ServesimError):
            check_specs(items)
    stats = outcome(lambda: trace_statistics(TraceConfig.model_validate({**trace, "path": str(path)}), path),
                    names=names)
    if not isinstance(stats, ServesimError):
        assert stats, "statistics of a readable trace"


FORMATS = sorted(SAMPLES)


@fuzz_settings(120)
@given(fmt=st.sampled_from(FORMATS), auto=st.booleans(), data=st.data())
def test_damaged_traces_replay_or_fail_with_one_line(fmt: str, auto: bool, data) -> None:
    suffix, text, options = SAMPLES[fmt]
    raw = data.draw(damaged(text))
    compression, raw = data.draw(compressed(raw))
    if auto and fmt not in ("csv", "jsonl"):
        fmt = "auto"
    with tempfile.TemporaryDirectory() as folder:
        name = f"trace{suffix}{compression}"
        (Path(folder) / name).write_bytes(raw)
        replay(Path(folder), name, fmt, options)


@fuzz_settings(30)
@given(fmt=st.sampled_from(FORMATS), raw=st.binary(max_size=300), suffix=st.sampled_from(
    [".csv", ".jsonl", ".csv.gz", ".jsonl.xz", ".bz2", ".txt"]))
def test_arbitrary_bytes_as_a_trace_fail_with_one_line(fmt: str, raw: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / f"t{suffix}").write_bytes(raw)
        replay(Path(folder), f"t{suffix}", "auto" if fmt in ("csv", "jsonl") else fmt, {})


def test_every_sample_replays_unharmed() -> None:
    for fmt, (suffix, text, options) in SAMPLES.items():
        with tempfile.TemporaryDirectory() as folder:
            (Path(folder) / f"t{suffix}").write_text(text, encoding="utf-8")
            workload = build_workload(WorkloadConfig.model_validate({"trace": {"path": f"t{suffix}", "format": fmt,
                                                                               **options}}),
                                      np.random.default_rng(0), Path(folder))
            items = list(workload)
            assert items, fmt
            check_specs(items)


FOUND = [
    # (file name, text, format, words of the one-line error): what fuzzing found, kept as fixed cases
    ("t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,1\n1,99999999999999999999999,1\n", "vidur",
     ["line 3", "num_prefill_tokens", "more than 2147483647 tokens"]),
    ("t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens\n0,5,9223372036854775808\n", "vidur",
     ["line 2", "num_decode_tokens", "more than"]),
    ("t.csv", "TIMESTAMP,ContextTokens,GeneratedTokens\n5,10,2\n6,10,2\n", "azure",
     ["line 2", "TIMESTAMP", "not a date-time"]),
]


def test_traces_fuzzing_found_fail_with_one_line() -> None:
    import warnings

    for name, text, fmt, words in FOUND:
        with tempfile.TemporaryDirectory() as folder, warnings.catch_warnings():
            warnings.simplefilter("error")  # no overflowing casts, no deprecated parsing
            (Path(folder) / name).write_text(text)
            config = WorkloadConfig.model_validate({"trace": {"path": name, "format": fmt}})
            error = outcome(lambda: list(build_workload(config, np.random.default_rng(0), Path(folder))),
                            names=lambda m: m.startswith(str(Path(folder) / name)))
            assert isinstance(error, ServesimError), (text, error)
            assert all(word in str(error) for word in words), str(error)
