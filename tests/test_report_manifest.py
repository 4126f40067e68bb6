"""JSONL and CSV manifests: schema-checked lines, exact read-back of hostile text."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from batcher.models import JobState
from batcher.report import (
    CSV_COLUMNS,
    csv_lines,
    jsonl_lines,
    manifest_schema,
    render_csv,
    render_jsonl,
)
from batcher.report.manifest import iso
from tests.test_report_samples import (
    HOSTILE_PROMPT,
    LONG_PROMPT,
    SCRIPT_END,
    SHOTS,
    make_record,
    sweep_run,
)


@pytest.fixture
def records(tmp_path: Path) -> list:
    return sweep_run(tmp_path / "out" / "tuscany")


def _lines(text: str) -> list[dict]:
    assert text.endswith("\n")
    return [json.loads(line) for line in text.splitlines()]


def test_the_schema_is_valid_and_every_line_validates(records: list) -> None:
    schema = manifest_schema()
    Draft202012Validator.check_schema(schema)
    validator = Draft202012Validator(schema, format_checker=FormatChecker())
    lines = _lines(render_jsonl(records))
    assert len(lines) == len(records)
    for line in lines:
        errors = [e.message for e in validator.iter_errors(line)]
        assert errors == [], line["key"]


def test_the_schema_rejects_a_broken_line(records: list) -> None:
    validator = Draft202012Validator(manifest_schema())
    line = json.loads(render_jsonl(records[:1]))
    line["outputs"][0]["sha256"] = "not-a-hash"
    del line["timings"]
    assert len(list(validator.iter_errors(line))) == 2


def test_jsonl_keeps_every_version_payload_and_timing(records: list) -> None:
    lines = _lines(render_jsonl(records))
    assert [line["key"] for line in lines] == [r.key for r in records]
    terrace = [line for line in lines if line["name"] == "terrace"]
    assert [(t["version"], t["current"]) for t in terrace] == [(1, False), (2, True)]
    shots = next(line for line in lines if line["name"] == "terrace-shots")
    assert shots["payload"]["multi_prompt"] == SHOTS
    assert shots["request_id"] == shots["attempts"][-1]["request_id"] is not None
    assert shots["timings"]["render_seconds"] == 94.5
    assert shots["timings"]["submitted_at"].endswith("Z")
    failed = next(line for line in lines if line["state"] == "failed")
    assert failed["error"] == "generation failed: content moderation"
    assert [a["outcome"] for a in failed["attempts"]] == ["failed", "failed"]
    assert failed["outputs"] == []
    hostile = next(line for line in lines if line["payload"]["prompt"] == HOSTILE_PROMPT)
    assert hostile["outputs"][0]["path"] == "odd dir/a b#1?.mp4"


def test_iso_times_are_utc_with_milliseconds() -> None:
    assert iso(1_767_225_600.25) == "2026-01-01T00:00:00.250Z"
    assert iso(None) is None


def test_csv_reads_back_exactly_with_dictreader(records: list) -> None:
    text = render_csv(records)
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    assert tuple(rows[0]) == CSV_COLUMNS
    current = [r for r in records if r.current]
    assert [row["key"] for row in rows] == [r.key for r in current]
    by_key = {row["key"]: row for row in rows}
    hostile = next(r for r in current if r.payload["prompt"] == HOSTILE_PROMPT)
    row = by_key[hostile.key]
    assert row["prompt"] == HOSTILE_PROMPT
    assert row["negative_prompt"] == SCRIPT_END
    assert row["output_path"] == "odd dir/a b#1?.mp4"
    long = next(r for r in current if r.name == "long")
    assert by_key[long.key]["prompt"] == LONG_PROMPT


def test_csv_columns_are_flat_and_typed_as_json(records: list) -> None:
    rows = {row["name"]: row for row in csv.DictReader(io.StringIO(render_csv(records)))}
    shots = rows["terrace-shots"]
    assert json.loads(shots["shots"]) == SHOTS
    assert json.loads(shots["other_params"]) == {"shot_type": "customize"}
    assert shots["duration"] == "12" and shots["sound"] == ""
    assert shots["state"] == "done" and len(shots["sha256"]) == 64
    assert float(shots["render_seconds"]) == 94.5
    assert float(shots["cost"]) == pytest.approx(0.168 * 12)
    broken = rows["broken"]
    assert broken["error"] == "generation failed: content moderation"
    assert broken["output_path"] == broken["size"] == ""
    assert rows["later"]["submitted_at"] == "" and rows["later"]["request_id"] == ""


def test_csv_quotes_commas_quotes_and_newlines() -> None:
    prompt = 'a, "b"\nc\r\nd'
    record = make_record(prompt=prompt, payload={"cfg_scale": 0.5, "sound": True})
    text = render_csv([record])
    assert '"a, ""b""' in text
    (row,) = csv.DictReader(io.StringIO(text, newline=""))
    assert row["prompt"] == prompt
    assert (row["cfg_scale"], row["sound"]) == ("0.5", "true")


def test_empty_runs_give_an_empty_manifest_and_a_header_only_csv() -> None:
    assert render_jsonl([]) == ""
    assert render_csv([]).splitlines() == [",".join(CSV_COLUMNS)]
    old = make_record(current=False, state=JobState.FAILED)
    assert render_csv([old]).splitlines() == [",".join(CSV_COLUMNS)]


@given(st.floats(min_value=0, max_value=4e9, allow_nan=False))
def test_iso_says_what_datetime_says(ts: float) -> None:
    """The fast ISO stamp equals datetime's own, its rounding included."""
    expected = datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="milliseconds")
    assert iso(ts) == expected.replace("+00:00", "Z")


def test_jsonl_and_csv_stream_from_an_iterator_of_records() -> None:
    records = [make_record(name=f"j{i}", seq=i) for i in range(3)]
    pieces = list(jsonl_lines(iter(records)))
    assert len(pieces) == 3 and "".join(pieces) == render_jsonl(records)
    assert "".join(csv_lines(iter(records))) == render_csv(records)


def test_a_csv_row_is_built_in_column_order() -> None:
    """csv_lines writes a row's values in order, trusting csv_row to build them so."""
    from batcher.report.manifest import csv_row

    assert tuple(csv_row(make_record())) == CSV_COLUMNS
