"""Property tests: expansion is deterministic, keys and output names are unique and safe,
fingerprints follow the payload exactly, field-wise validation equals whole validation."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from batcher.jobfile import loads_jobfile, names
from batcher.jobfile.rules import Checker
from batcher.jobfile.yamlpos import parse
from batcher.models import DEFAULT_MODEL
from batcher.schema import load_schema

SAFE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]*\Z")
RESERVED = {"CON", "PRN", "AUX", "NUL"} | {f"{d}{i}" for d in ("COM", "LPT") for i in range(10)}
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

names_st = st.text(min_size=1, max_size=150).filter(lambda s: s.strip() != "")
tricky_names = st.one_of(
    names_st,
    st.sampled_from(
        ["..", "../x", "/etc/passwd", "a/../../b", "CON", "nul.txt", "Com1", ".hidden", "-rf"]
        + ["a\\b", "日本語", "é", "x" * 300, "\x00", " . ", "a\u2028b", "fox", "Fox", ""]
    ),
)
prompt_st = st.text(min_size=1, max_size=40).filter(
    lambda s: s.strip() and "{" not in s and "}" not in s
)


_YAML_UNSAFE = re.compile(
    "[^\x09\x0a\x0d\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]|[\x85\u2028\u2029]"
)


def yaml_text(data: Any) -> str:
    """JSON (a subset of YAML) with the characters PyYAML treats specially escaped."""
    text = json.dumps(data, ensure_ascii=False)
    return _YAML_UNSAFE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def assert_safe(stem: str) -> None:
    assert SAFE.match(stem), stem
    assert ".." not in stem and not stem.endswith(".")
    assert len(stem) <= names.MAX_STEM
    assert stem.split(".", 1)[0].upper() not in RESERVED
    base = Path("/srv/outputs/run")
    assert os.path.normpath(base / f"{stem}.mp4").startswith(str(base) + os.sep)
    assert os.path.basename(stem) == stem


@given(tricky_names)
@FAST
def test_slug_is_always_a_safe_file_name(name: str) -> None:
    assert_safe(names.slug(name))
    assert_safe(names.output_stem(name, [names.name_part("prompt", name)], 3))


@given(st.lists(tricky_names, min_size=1, max_size=8, unique_by=lambda s: s.strip()))
@FAST
def test_any_job_names_give_unique_keys_and_safe_unique_output_names(job_names: list[str]) -> None:
    job_names = [n for n in job_names if n.strip()]  # a blank name is an error, tested apart
    assume(job_names)
    doc = {
        "jobs": [
            {"name": n, "prompt": "p", "sweep": {"cfg_scale": [0.1, 0.2]}, "repeat": 2}
            for n in job_names
        ]
    }
    jf = loads_jobfile(yaml_text(doc), path=Path("p.yaml"))
    assert len(jf.jobs) == 4 * len(job_names)
    assert len({j.key for j in jf.jobs}) == len(jf.jobs)
    assert len({j.output_name.casefold() for j in jf.jobs}) == len(jf.jobs)
    for j in jf.jobs:
        assert_safe(j.output_name)
        assert j.key.startswith("p/")


def jobfile_text(data: dict[str, Any], order: list[int]) -> str:
    """The same document with its mapping keys written in another order."""

    def shuffle(value: Any, depth: int = 0) -> Any:
        if isinstance(value, dict):
            items = list(value.items())
            k = order[depth % len(order)] % len(items) if items else 0
            items = items[k:] + items[:k]
            return {key: shuffle(v, depth + 1) for key, v in items}
        if isinstance(value, list):
            return [shuffle(v, depth + 1) for v in value]
        return value

    return yaml_text(shuffle(data))


sweep_st = st.fixed_dictionaries(
    {},
    optional={
        "cfg_scale": st.lists(
            st.sampled_from([0, 0.25, 0.5, 1.0]), min_size=1, max_size=3, unique=True
        ),
        "aspect_ratio": st.lists(st.sampled_from(["16:9", "9:16", "1:1"]), min_size=1, unique=True),
        "duration": st.lists(st.integers(3, 15), min_size=1, max_size=3, unique=True),
        "prompt": st.lists(prompt_st, min_size=1, max_size=3, unique=True),
    },
)


def entry(i: int, prompt: str, sweep: dict[str, Any], repeat: int) -> dict[str, Any]:
    out: dict[str, Any] = {"name": f"j{i}", "repeat": repeat}
    if "prompt" not in sweep:
        out["prompt"] = prompt  # a field is either set or swept, never both
    if sweep:
        out["sweep"] = sweep
    return out


@given(
    st.lists(st.tuples(prompt_st, sweep_st, st.integers(1, 3)), min_size=1, max_size=4),
    st.lists(st.integers(0, 7), min_size=1, max_size=5),
)
@FAST
def test_expansion_is_deterministic_across_key_orders(
    entries: list[tuple[str, dict[str, Any], int]], order: list[int]
) -> None:
    data = {
        "name": "det",
        "defaults": {"sound": False, "negative_prompt": "blur"},
        "jobs": [entry(i, p, s, r) for i, (p, s, r) in enumerate(entries)],
    }
    a = loads_jobfile(jobfile_text(data, [0]), path=Path("d.yaml"))
    b = loads_jobfile(jobfile_text(data, order), path=Path("d.yaml"))
    again = loads_jobfile(jobfile_text(data, [0]), path=Path("d.yaml"))
    view = [(j.key, j.fingerprint, j.output_name, dict(j.payload)) for j in a.jobs]
    assert view == [(j.key, j.fingerprint, j.output_name, dict(j.payload)) for j in again.jobs]
    assert sorted(view, key=str) == sorted(
        ((j.key, j.fingerprint, j.output_name, dict(j.payload)) for j in b.jobs), key=str
    )
    assert len({j.key for j in a.jobs}) == len(a.jobs)


payload_st = st.fixed_dictionaries(
    {"prompt": prompt_st},
    optional={
        "duration": st.one_of(st.integers(3, 15), st.integers(3, 15).map(float)),
        "cfg_scale": st.one_of(st.floats(0, 1), st.sampled_from([0, 1])),
        "sound": st.booleans(),
        "aspect_ratio": st.sampled_from(["16:9", "9:16", "1:1"]),
        "negative_prompt": prompt_st,
    },
)


def strict(value: Any) -> Any:
    """A value where True and 1 differ but 5 and 5.0 do not (JSON's equality)."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("num", float(value))
    if isinstance(value, dict):
        return {k: strict(v) for k, v in value.items()}
    return value


@given(payload_st, payload_st)
@FAST
def test_fingerprint_changes_iff_the_payload_changes(
    p1: dict[str, Any], p2: dict[str, Any]
) -> None:
    doc = {"jobs": [{"name": "a", **p1}, {"name": "b", **p2}]}
    jf = loads_jobfile(yaml_text(doc), path=Path("f.yaml"))
    a, b = jf.jobs
    assert strict(a.payload) == strict(p1) and strict(b.payload) == strict(p2)
    assert (a.fingerprint == b.fingerprint) == (strict(p1) == strict(p2))


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-5, 30) | st.floats(-2, 20) | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=8,
)
shot_st = st.fixed_dictionaries(
    {}, optional={"prompt": json_values, "duration": json_values, "extra": json_values}
)
any_payload_st = st.fixed_dictionaries(
    {},
    optional={
        "prompt": json_values,
        "duration": json_values,
        "cfg_scale": json_values,
        "sound": json_values,
        "aspect_ratio": json_values,
        "shot_type": json_values,
        "multi_prompt": st.one_of(json_values, st.lists(shot_st, max_size=3)),
    },
)


@given(any_payload_st)
@settings(max_examples=150, deadline=None)
def test_fieldwise_validation_equals_whole_object_validation(payload: dict[str, Any]) -> None:
    schema = load_schema(DEFAULT_MODEL)
    fast = Checker(parse("a: 1\n", file="x"), schema)
    assert fast.fields is not None  # the bundled schema takes the fast path
    assert {"prompt", "duration", "cfg_scale", "aspect_ratio"} <= set(fast.quick)
    fieldwise = Checker(parse("a: 1\n", file="x"), schema)
    fieldwise.quick = {}
    slow = Checker(parse("a: 1\n", file="x"), schema)
    slow.fields, slow.quick = None, {}
    found = set(fast.findings(payload))
    assert found == set(fieldwise.findings(payload)) == set(slow.findings(payload))
    for k, v in payload.items():  # what the quick check accepts, the schema accepts
        if k in fast.quick and fast.quick[k](v):
            assert schema.validator.evolve(schema=schema.schema["properties"][k]).is_valid(v)


_scalars = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["5", "0.3", "1e-5", "16:9", "yes", "No", "null", "~", "0x1F", "1_000",
                     "2026-12-02", ".inf", "-.nan", "=", "<<", "", " x ", "a: b", "- c", "#"]),
    st.integers(-(10**20), 10**20),
    st.floats(allow_nan=False),
    st.booleans(),
    st.none(),
)  # fmt: skip
_docs = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_scalars, inner, max_size=4),
    max_leaves=25,
)


def _every_path(data: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(data, dict):
        for k, v in data.items():
            out += _every_path(v, (*path, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            out += _every_path(v, (*path, i))
    return out


@given(_docs, st.sampled_from(["block", "flow", "plain"]))
@FAST
def test_the_fast_parse_gives_what_the_careful_parse_gives(data: Any, style: str) -> None:
    """Same data, same problems, and the same position for every value and key, at any depth
    (the fast path indexes shallow paths itself and the rest on demand)."""
    import yaml

    from batcher.errors import JobFileInvalid

    if style == "plain":
        text = "\n".join(f"{k}: {v}" for k, v in (data.items() if isinstance(data, dict) else []))
    else:
        text = yaml.safe_dump(data, default_flow_style=style == "flow", allow_unicode=True)
    try:
        careful = parse(text, file="f.yaml", careful=True)
    except JobFileInvalid as exc:
        try:
            parse(text, file="f.yaml")
        except JobFileInvalid as again:
            assert again.problems == exc.problems
            return
        raise AssertionError("the fast path accepted what the careful path refused") from None
    fast = parse(text, file="f.yaml")
    assert repr(fast.data) == repr(careful.data)
    assert fast.problems == careful.problems
    for path in _every_path(careful.data):
        assert fast.pos(path) == careful.pos(path)
        assert fast.key_pos(path) == careful.key_pos(path)
        assert fast.span(path) == careful.span(path)


@pytest.mark.parametrize(
    "text",
    [
        "a: 1\na: 2\n",
        "jobs:\n  - prompt: x\n    prompt: y\n",
        "a: &x [1, 2]\nb: *x\n",
        "base: &b {cfg_scale: 0.5}\njob:\n  <<: *b\n  prompt: x\n",
        "a: !!str 5\n",
        "a: !!binary aGVsbG8=\n",
        "a: !custom x\n",
        "? [1, 2]\n: x\n",
        "a: =\n",
        "a: 1\n---\nb: 2\n",
        "a: [" * 70 + "]" * 70 + "\n",
        "a: 'unclosed\n",
        "a: 16:9\nb: 1:30:00\nc: 2026-12-02\n",
        "",
        "# only a comment\n",
        "---\n",
    ],
)
def test_the_fast_parse_reports_what_the_careful_parse_reports(text: str) -> None:
    from batcher.errors import JobFileInvalid

    def outcome(careful: bool) -> Any:
        try:
            doc = parse(text, file="f.yaml", careful=careful)
        except JobFileInvalid as exc:
            return exc.problems
        return repr(doc.data), doc.problems, [doc.pos(p) for p in _every_path(doc.data)]

    assert outcome(False) == outcome(True)


def test_the_quick_checks_accept_only_what_the_schema_accepts_at_the_edges() -> None:
    schema = load_schema(DEFAULT_MODEL)
    checker = Checker(parse("a: 1\n", file="x"), schema)
    edges = [None, True, False, 0, 1, 2, 3, 15, 16, -1, 0.0, 0.5, 1.0, 1.5, -0.5, 3.0, 5.5,
             float("inf"), float("-inf"), float("nan"), "", "x", "16:9", "1:1", "16:10",
             "customize", "Customize", "5", [], {}, ["x"]]  # fmt: skip
    accepted = 0
    for field, quick in checker.quick.items():
        sub = schema.validator.evolve(schema=schema.schema["properties"][field])
        for v in edges:
            if quick(v):
                accepted += 1
                assert sub.is_valid(v), (field, v)
    assert accepted >= 10  # the quick path is taken for ordinary values
    assert checker.quick["duration"](5) and checker.quick["cfg_scale"](0.5)
    assert checker.quick["aspect_ratio"]("9:16") and checker.quick["prompt"]("a fox")


def test_a_deep_question_indexes_only_the_job_it_is_about() -> None:
    """A problem inside one job of a big file is located from that job's own lines: the
    rest of the file is not parsed again (memory stays that of the fast path)."""
    text = "jobs:\n" + "".join(
        f"  - name: j{i}\n    multi_prompt:\n      - {{prompt: p{i}, duration: 5}}\n"
        for i in range(50)
    )
    doc = parse(text, file="f.yaml")
    careful = parse(text, file="f.yaml", careful=True)
    path = ("jobs", 7, "multi_prompt", 0, "duration")
    assert doc.pos(path) == careful.pos(path) == (25, 32)
    assert doc.key_pos(path) == careful.key_pos(path)
    assert doc.indexed == {("jobs", 7)} and not doc.complete
    assert ("jobs", 8, "multi_prompt") not in doc.values


@given(st.text(alphabet='ab,;\t é"\r\n', max_size=30), st.sampled_from([",", "\t"]))
@FAST
def test_csv_cell_positions_by_lengths_match_the_scan(chunk: str, delimiter: str) -> None:
    from batcher.jobfile.rows import _cell_positions, _scanned_positions

    assert _cell_positions(chunk, 7, delimiter) == _scanned_positions(chunk, 7, delimiter)
