"""Bad traces fail with one line naming the file, the line and the problem - or are repaired only on request.

Covers missing columns, non-numeric, negative, fractional and NaN tokens,
empty cells, unsorted timestamps (an error unless ``on_unsorted: sort``),
empty files, broken JSON lines, bad date-times and damaged archives, for
CSV and JSONL formats, including rows past the first chunk. Booleans are not
token counts or times (pandas would read ``true`` as 1), and retiming that
pushes arrivals past the ~31 years servesim simulates (or to infinity) names
the factor or the line.
"""

from __future__ import annotations

import gzip
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from experiment_files import write_small
from simulator.cli import main
from simulator.errors import TraceError
from workload_helpers import build, columns, config_error, run, trace, write

HEADER = "arrived_at,num_prefill_tokens,num_decode_tokens\n"
AZURE = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
MOON = '{"timestamp": 0, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]}\n'


def failure(path: Path, **options) -> str:
    with pytest.raises(TraceError) as info:
        list(build(trace(path.name, **options), base_dir=path.parent))
    message = str(info.value)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return message


@pytest.mark.parametrize(("text", "expected"), [
    ("arrived_at,num_prefill_tokens,num_decode_tokens,x\n", "no data rows after the header"),
    (HEADER.replace(",num_decode_tokens", ",other") + "0,5,1\n",
     "line 1: cannot tell the trace format"),
    (HEADER + "0,5,1\n1,five,1\n", "line 3: column 'num_prefill_tokens': 'five' is not a finite number"),
    (HEADER + "0,5,1\n1,,1\n", "line 3: column 'num_prefill_tokens': empty"),
    (HEADER + "0,5,1\n1,nan,1\n", "line 3: column 'num_prefill_tokens': empty"),
    (HEADER + "0,5,1\n1,inf,1\n", "line 3: column 'num_prefill_tokens': inf is not a finite number"),
    (HEADER + "0,5,1\nnan,5,1\n", "line 3: column 'arrived_at': empty"),
    (HEADER + "0,5,1\n1,5,-2\n", "line 3: column 'num_decode_tokens': negative token count (-2)"),
    (HEADER + "0,5,1\n1,5.5,2\n", "line 3: column 'num_prefill_tokens': not a whole number of tokens (5.5)"),
    (HEADER + "0,5,1\n1,5,2,9\n", "line 3: expected 3 fields, found 4"),
    (HEADER + "0,5,1,9\n1,5,2\n", "line 2: more fields than the header names"),
    (HEADER + "0,5\n1,5,2\n", "line 2: column 'num_decode_tokens': empty"),
    (HEADER + "0,5,1\n2,5,1\n1,5,1\n", "line 4: not sorted by arrival time: 1 s earlier than the row above; "
                                        "set on_unsorted: sort"),
    (HEADER, "no data rows after the header"),
    ("", "file is empty"),
    (AZURE + "2023-11-16 18:17:03.97,5,1\nyesterday,5,1\n", "line 3: column 'TIMESTAMP': 'yesterday' is not a "
                                                             "date-time"),
    (HEADER + "0,True,1\n1,False,1\n", "line 2: column 'num_prefill_tokens': expected a number, got the boolean true"),
])
def test_bad_csv_traces(tmp_path, text, expected):
    assert expected in failure(write(tmp_path / "bad.csv", text))


def test_a_number_where_a_date_time_is_expected_is_shown_as_written(tmp_path):
    message = failure(write(tmp_path / "bad.csv", HEADER + "0,5,1\n"), columns={"time_unit": "datetime"})
    assert message.endswith("line 2: column 'arrived_at': 0 is not a date-time")


def test_missing_column_of_a_known_format(tmp_path):
    path = write(tmp_path / "bad.csv", "arrived_at,num_prefill_tokens\n0,5\n")
    assert failure(path, format="vidur").endswith(
        "column 'num_decode_tokens': not found; the header has: arrived_at, num_prefill_tokens")


@pytest.mark.parametrize(("text", "expected"), [
    (MOON + '{"timestamp": 1, "input_length": 600, "output_length": 5, "hash_ids": [1, 2]\n',
     "line 2: not valid JSON"),
    (MOON + "[1, 2]\n", "line 2: expected a JSON object"),
    (MOON + '\n{"timestamp": 1, "input_length": -3, "output_length": 5, "hash_ids": []}\n',
     "line 3: key 'input_length': negative token count (-3)"),
    (MOON + '{"timestamp": 1, "input_length": 3, "output_length": 5, "hash_ids": "1 2"}\n',
     "line 2: key 'hash_ids': expected a list of integer hashes"),
    (MOON + '{"timestamp": 1, "input_length": 3, "hash_ids": [1]}\n', "line 2: key 'output_length': missing"),
    (MOON + '{"timestamp": null, "input_length": 3, "output_length": 1, "hash_ids": [1]}\n',
     "line 2: key 'timestamp': missing or null"),
    ('{"timestamp": 5, "input_length": 3, "output_length": 1, "hash_ids": [1]}\n' + MOON,
     "line 2: not sorted by arrival time"),
    (MOON + '{"timestamp": 1, "input_length": true, "output_length": 5, "hash_ids": [1]}\n',
     "line 2: key 'input_length': expected a number, got the boolean true"),
    (MOON + '{"timestamp": 1, "input_length": 3, "output_length": false, "hash_ids": [1]}\n',
     "line 2: key 'output_length': expected a number, got the boolean false"),
    (MOON + '{"timestamp": true, "input_length": 3, "output_length": 5, "hash_ids": [1]}\n',
     "line 2: key 'timestamp': expected a number, got the boolean true"),
])
def test_bad_jsonl_traces(tmp_path, text, expected):
    assert expected in failure(write(tmp_path / "bad.jsonl", text))


def test_a_bad_row_past_the_first_chunk_names_its_line(tmp_path):
    rows = [f"{i},{i + 1},1" for i in range(300_000)]
    rows[299_990] = "299990,-1,1"
    path = write(tmp_path / "long.csv", HEADER + "\n".join(rows) + "\n")
    workload = build(trace(path.name), base_dir=tmp_path)  # the first chunk is fine: building succeeds
    with pytest.raises(TraceError, match=r"line 299992: column 'num_prefill_tokens': negative token count"):
        list(workload)


def test_unsorted_rows_across_chunks_are_found(tmp_path):
    rows = [f"{i},{i + 1},1" for i in range(300_000)]
    rows[270_000] = "5,1,1"
    path = write(tmp_path / "long.csv", HEADER + "\n".join(rows) + "\n")
    with pytest.raises(TraceError, match="line 270002: not sorted by arrival time"):
        list(build(trace(path.name), base_dir=tmp_path))


def test_sorting_is_an_explicit_repair_and_is_counted(tmp_path):
    write(tmp_path / "t.csv", HEADER + "3,30,0\n1,10,1\n2,20,2\n")
    workload = build(trace("t.csv", on_unsorted="sort"), base_dir=tmp_path)
    arrival, prompt, output = columns(list(workload))
    assert arrival.tolist() == [0.0, 1.0, 2.0]
    assert prompt.tolist() == [10, 20, 30] and output.tolist() == [1, 2, 1]
    assert workload.stats.reordered_rows == 1 and workload.stats.clipped_outputs == 1


def test_negative_arrival_needs_start_at_zero(tmp_path):
    path = write(tmp_path / "t.csv", HEADER + "-1,5,1\n0,5,1\n")
    assert "line 2: negative arrival time (-1 s); set start_at_zero: true" in failure(path, start_at_zero=False)
    assert [s.arrival_s for s in run(trace(str(path)))] == [0.0, 1.0]


@pytest.mark.parametrize("damage", ["truncated", "not-gzip"])
def test_damaged_gzip(tmp_path, damage):
    blob = gzip.compress((HEADER + "0,5,1\n" * 20_000).encode())
    blob = blob[: len(blob) // 2] if damage == "truncated" else b"plain text, not gzip" * 10
    path = tmp_path / "t.csv.gz"
    path.write_bytes(blob)
    assert "cannot read file" in failure(path, format="vidur")


def test_missing_file_and_folder(tmp_path):
    assert failure(tmp_path / "missing.csv").endswith("missing.csv: file not found")
    (tmp_path / "dir.csv").mkdir()
    assert "is a folder, not a file" in failure(tmp_path / "dir.csv")


def test_a_filter_that_keeps_nothing_is_an_error(tmp_path):
    path = write(tmp_path / "t.csv", "arrived_at,num_prefill_tokens,num_decode_tokens,m\n0,5,1,a\n1,5,1,a\n")
    message = failure(path, transforms={"filter": {"m": ["b"]}})
    assert "no requests left to replay (2 rows read, 0 dropped as failed, 2 filtered out" in message


def test_a_filter_on_a_missing_column_is_an_error(tmp_path):
    path = write(tmp_path / "t.csv", HEADER + "0,5,1\n")
    assert "column 'Model': not found; the header has" in failure(path, transforms={"filter": {"Model": ["x"]}})


# ------------------------------------------------------------------ retiming beyond what servesim simulates
@pytest.mark.parametrize("transform, value", [
    ("time_scale", 1e300), ("time_scale", 1e-300), ("rate_scale", 1e300), ("rate_scale", 1e-300),
    ("time_scale", 1e10), ("rate_scale", 1e-10),
])
def test_a_retiming_factor_beyond_a_billion_either_way_is_refused(transform, value):
    message = config_error(trace={"path": "t.csv", "transforms": {transform: value}})
    assert message == (f"exp.yaml: workload.trace.transforms.{transform}: expected a factor from 1e-09 to 1e+09, "
                       f"got {value:g} (beyond them arrival times overflow to infinity or collapse to one instant)")


@pytest.mark.parametrize("times, transforms, cause", [
    ([0, 0.5, 2], {"time_scale": 1e9}, " after transforms.time_scale: 1e+09; lower time_scale"),
    ([0, 0.5, 2], {"rate_scale": 1e-9}, " after transforms.rate_scale: 1e-09; raise rate_scale"),
    ([0, 0.5, 2e9], {}, "; check the trace's time unit"),
], ids=["time_scale", "rate_scale", "raw"])
def test_an_arrival_beyond_the_simulated_span_names_its_line(tmp_path, times, transforms, cause):
    path = write(tmp_path / "t.csv", HEADER + "".join(f"{t},5,1\n" for t in times))
    message = failure(path, transforms=transforms)
    expected = "expected finite arrival times up to 1e+09 s (about 31 years, the longest servesim simulates)"
    what, hint = cause.split("; ")
    assert message == f"{path}: line 4: arrives at 2e+09 s{what}; {expected}; {hint}"


def test_rows_beyond_the_simulated_span_are_fine_when_limits_stop_before_them(tmp_path):
    write(tmp_path / "t.csv", HEADER + "0,5,1\n1,5,1\n2e9,5,1\n")
    assert len(run({**trace("t.csv"), "num_requests": 2}, base_dir=tmp_path)) == 2


def test_an_arrival_overflowing_to_infinity_is_one_line_without_warnings(tmp_path):
    path = write(tmp_path / "t.csv", HEADER + "-1.7e308,5,1\n1.7e308,5,1\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # numpy's overflow warning would be a second line on stderr
        assert failure(path).endswith("line 3: arrives at inf s; expected finite arrival times up to 1e+09 s "
                                      "(about 31 years, the longest servesim simulates); check the trace's time unit")


def test_a_huge_time_scale_fails_in_one_line_naming_the_field(tmp_path, capsys):
    write(tmp_path / "t.csv", HEADER + "0,5,1\n1,5,1\n")
    exp = write_small(tmp_path, workload={"trace": {"path": "t.csv", "transforms": {"time_scale": 1e300}}})
    out = tmp_path / "out"
    code = main(["run", str(exp), "-o", str(out)])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and not out.exists(), err
    assert err.startswith(f"servesim: error: {exp}: workload.trace.transforms.time_scale: expected a factor from ")


rows = st.lists(st.tuples(st.floats(0, 1e6, allow_nan=False), st.integers(0, 10**6), st.integers(0, 10**4)),
                min_size=1, max_size=50)


@settings(max_examples=40, deadline=None)
@given(rows=rows)
def test_sorting_any_trace_keeps_every_row(rows):
    with tempfile.TemporaryDirectory() as folder:
        lines = [f"{t!r},{p},{o}" for t, p, o in rows]
        write(Path(folder) / "t.csv", HEADER + "\n".join(lines) + "\n")
        specs = run(trace("t.csv", start_at_zero=False, on_unsorted="sort"), base_dir=Path(folder))
    arrival, prompt, output = columns(specs)
    assert np.all(np.diff(arrival) >= 0) and prompt.min() >= 1 and output.min() >= 1
    assert sorted(arrival.tolist()) == sorted(t for t, _, _ in rows)
    assert sorted(prompt.tolist()) == sorted(max(p, 1) for _, p, _ in rows)
