"""Job files in-process: expansion, payloads, vars, rows, prices, run options, rules."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from batcher.errors import JobFileError, JobFileInvalid
from batcher.jobfile import JobFile, load_jobfile, loads_jobfile
from batcher.jobfile import expand as expand_mod
from batcher.jobfile import rows as rows_mod
from batcher.models import DEFAULT_MODEL, RunOptions
from batcher.schema import load_schema


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)


def load(text: str, **files: str) -> JobFile:
    for name, content in files.items():
        Path(name.replace("__", ".")).write_text(content, encoding="utf-8")
    Path("t.yaml").write_text(text, encoding="utf-8")
    return load_jobfile(Path("t.yaml"))


def at(text: str, needle: str, file: str = "t.yaml") -> str:
    """`FILE:LINE:COL` of the first occurrence of `needle` in `text` (1-based)."""
    i = text.index(needle)
    line = text.count("\n", 0, i) + 1
    return f"{file}:{line}:{i - text.rfind(chr(10), 0, i)}"


def problems(text: str, **files: str) -> list[str]:
    with pytest.raises(JobFileInvalid) as info:
        load(text, **files)
    return [str(p) for p in info.value.problems]


# -- expansion, keys, names ------------------------------------------------------------


def test_brief_example_expands_as_documented() -> None:
    jf = load(
        """
name: tuscany
defaults: {duration: 5, sound: true}
jobs:
  - name: fox
    prompt: A red fox
    sweep:
      cfg_scale: [0.3, 0.5]
      aspect_ratio: ["16:9", "9:16"]
    repeat: 2
"""
    )
    keys = [j.key for j in jf.jobs]
    assert len(keys) == 8
    assert keys[:3] == [
        "tuscany/fox/aspect_ratio=16:9,cfg_scale=0.3",
        "tuscany/fox/aspect_ratio=16:9,cfg_scale=0.3#2",
        "tuscany/fox/aspect_ratio=16:9,cfg_scale=0.5",
    ]
    assert [j.output_name for j in jf.jobs[:2]] == [
        "fox__aspect_ratio-16x9__cfg_scale-0.3",
        "fox__aspect_ratio-16x9__cfg_scale-0.3__r2",
    ]
    first = jf.jobs[0]
    assert first.run == "tuscany" and first.name == "fox" and first.model == DEFAULT_MODEL
    assert first.sweep == {"aspect_ratio": "16:9", "cfg_scale": 0.3}
    assert [j.repeat for j in jf.jobs[:2]] == [0, 1]
    assert first.source == "t.yaml:5"
    assert dict(first.payload) == {
        "prompt": "A red fox",
        "duration": 5,
        "aspect_ratio": "16:9",
        "cfg_scale": 0.3,
        "sound": True,
    }
    assert jf.jobs[0].fingerprint == jf.jobs[1].fingerprint  # repeats: same payload
    assert jf.jobs[0].fingerprint != jf.jobs[2].fingerprint


def test_raising_repeat_keeps_the_existing_keys() -> None:
    one = load("jobs:\n  - {name: fox, prompt: A fox}\n")
    three = load("jobs:\n  - {name: fox, prompt: A fox, repeat: 3}\n")
    assert [j.key for j in one.jobs] == ["t/fox"]
    assert [j.key for j in three.jobs] == ["t/fox", "t/fox#2", "t/fox#3"]


def test_adding_a_sweep_value_keeps_the_existing_keys() -> None:
    a = load("jobs:\n  - {name: f, prompt: p, sweep: {cfg_scale: [0.3]}}\n")
    b = load("jobs:\n  - {name: f, prompt: p, sweep: {cfg_scale: [0.3, 0.9]}}\n")
    assert {j.key for j in a.jobs} < {j.key for j in b.jobs}


def test_default_names_run_name_and_shorthand_prompts() -> None:
    jf = load("jobs:\n  - A red fox\n  - prompt: An owl\n")
    assert jf.run == "t"  # the file stem
    assert [j.name for j in jf.jobs] == ["job-1", "job-2"]
    assert jf.jobs[0].payload == {"prompt": "A red fox"}


def test_run_name_is_slugged_with_a_warning() -> None:
    jf = load("name: My Run/../x\njobs:\n  - A fox\n")
    assert jf.run == "My-Run-.-x"
    assert [str(w) for w in jf.warnings] == [
        "t.yaml:1:7: warning: name: run name 'My Run/../x' is used as 'My-Run-.-x'"
    ]


def test_sweep_in_defaults_applies_to_every_job_unless_set() -> None:
    jf = load(
        """
defaults:
  sweep: {aspect_ratio: ["16:9", "9:16"]}
jobs:
  - {name: a, prompt: A}
  - {name: b, prompt: B, aspect_ratio: "1:1"}
  - {name: c, prompt: C, sweep: {cfg_scale: [0.1, 0.2]}}
"""
    )
    by_name: dict[str, int] = {}
    for j in jf.jobs:
        by_name[j.name] = by_name.get(j.name, 0) + 1
    assert by_name == {"a": 2, "b": 1, "c": 4}
    assert jf.jobs[2].payload["aspect_ratio"] == "1:1"


def test_sweep_over_prompt_and_multi_prompt_values() -> None:
    jf = load(
        """
jobs:
  - name: p
    duration: 6
    sweep:
      prompt: ["A fox", "An owl"]
      multi_prompt:
        - [{prompt: a, duration: 3}, {prompt: b, duration: 3}]
        - [{prompt: c, duration: 6}]
"""
    )
    assert len(jf.jobs) == 4
    assert jf.jobs[0].key == (  # "," inside a value is escaped: keys stay unambiguous
        't/p/multi_prompt=[{"duration":3%2C"prompt":"a"}%2C{"duration":3%2C"prompt":"b"}]'
        ",prompt=A fox"
    )
    assert all(j.payload["shot_type"] == "customize" for j in jf.jobs)
    assert len({j.output_name for j in jf.jobs}) == 4


def test_long_prompt_sweep_values_are_shortened_with_a_hash() -> None:
    long_a, long_b = "x" * 100 + "a", "x" * 100 + "b"
    jf = load(f"jobs:\n  - name: p\n    sweep:\n      prompt: [{long_a}, {long_b}]\n")
    a, b = jf.jobs
    assert a.key != b.key and len(a.key) < 80
    assert a.output_name != b.output_name and len(a.output_name) < 60


def test_integral_floats_and_trailing_zeros_give_one_fingerprint() -> None:
    a = load("jobs:\n  - {name: j, prompt: p, cfg_scale: 0.5, duration: 5}\n")
    b = load("jobs:\n  - {name: j, prompt: p, cfg_scale: 0.50, duration: 5.0}\n")
    c = load("jobs:\n  - {name: j, prompt: p, duration: 5, cfg_scale: 0.5}\n")
    assert a.jobs[0].fingerprint == b.jobs[0].fingerprint == c.jobs[0].fingerprint
    assert b.jobs[0].payload["duration"] == 5 and isinstance(b.jobs[0].payload["duration"], int)
    d = load("jobs:\n  - {name: j, prompt: p, cfg_scale: 0.6, duration: 5}\n")
    assert d.jobs[0].fingerprint != a.jobs[0].fingerprint


def test_fingerprint_covers_the_model() -> None:
    schema = json.dumps(
        {"x-model-id": "acme/m", "type": "object", "properties": {"prompt": {"type": "string"}}}
    )
    a = load("jobs:\n  - {name: j, prompt: p}\n")
    b = load("schema: m.json\njobs:\n  - {name: j, prompt: p}\n", m__json=schema)
    assert a.jobs[0].payload == b.jobs[0].payload
    assert a.jobs[0].fingerprint != b.jobs[0].fingerprint
    assert b.model == "acme/m" and b.jobs[0].model == "acme/m"


def test_schema_defaults_are_not_injected() -> None:
    jf = load("jobs:\n  - A fox\n")
    assert dict(jf.jobs[0].payload) == {"prompt": "A fox"}
    assert jf.jobs[0].cost == pytest.approx(0.84)  # 5 s (default) with sound (default)


def test_shot_type_is_added_for_multi_prompt_only() -> None:
    jf = load(
        """
jobs:
  - name: shots
    prompt: p
    duration: 8
    multi_prompt: [{prompt: a, duration: 4}, {prompt: b, duration: 4}]
  - {name: plain, prompt: p}
"""
    )
    assert jf.jobs[0].payload["shot_type"] == "customize"
    assert "shot_type" not in jf.jobs[1].payload


def test_too_many_jobs_is_refused_before_expanding(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(expand_mod, "MAX_JOBS", 10)
    got = problems("jobs:\n  - name: a\n    prompt: p\n    repeat: 11\n")
    assert got == ["t.yaml:2:5: jobs[0]: the file expands to more than 10 jobs; split it"]


# -- vars ------------------------------------------------------------------------------


def test_vars_fill_prompts_negative_prompts_and_shots() -> None:
    jf = load(
        """
vars: {cam: "Arri", n: 35}
jobs:
  - name: j
    prompt: "shot on {cam} {n}mm, {{literal}} and }}"
    negative_prompt: "not {cam}"
    duration: 6
    multi_prompt: [{prompt: "{ cam } close", duration: 6}]
"""
    )
    p = jf.jobs[0].payload
    assert p["prompt"] == "shot on Arri 35mm, {literal} and }"
    assert p["negative_prompt"] == "not Arri"
    assert p["multi_prompt"][0]["prompt"] == "Arri close"


def test_undefined_var_is_located_at_the_placeholder() -> None:
    text = "vars: {cam: A}\njobs:\n  - name: j\n    prompt: >-\n"
    text += "      one line\n      then {lens} here {cam}\n"
    assert problems(text) == ["t.yaml:6:12: jobs[0].prompt: undefined var 'lens'"]


def test_undefined_var_without_any_vars_hints_at_escaping() -> None:
    assert problems('jobs:\n  - prompt: "a {b}"\n') == [
        "t.yaml:2:16: jobs[0].prompt: undefined var 'b' "
        "(no `vars:` are defined; write {{ and }} for literal braces)"
    ]


def test_vars_are_not_applied_to_other_fields() -> None:
    got = problems('vars: {r: "16:9"}\njobs:\n  - {prompt: p, aspect_ratio: "{r}"}\n')
    assert got[-1] == "t.yaml:3:31: jobs[0].aspect_ratio: '{r}' is not one of '16:9', '9:16', '1:1'"


def test_bad_var_names() -> None:
    assert problems("vars: {a-b: x}\njobs: [p]\n") == [
        "t.yaml:1:8: vars.a-b: a var name must be letters, digits and _"
    ]


# -- rows ------------------------------------------------------------------------------

CSV = """name,prompt,duration,sound,cfg_scale,multi_prompt
harbour,"Boats, at dawn",5,yes,0.25,
market,A market,,no,,
,Unnamed,6,,,"[{""prompt"": ""a"", ""duration"": 6}]"
"""


def test_rows_from_csv_are_typed_by_the_schema() -> None:
    jf = load(
        "defaults: {duration: 10}\njobs:\n  - rows: r.csv\n    aspect_ratio: '9:16'\n", r__csv=CSV
    )
    assert [j.name for j in jf.jobs] == ["harbour", "market", "r-unnamed-1b6cc1"]
    a, b, c = (dict(j.payload) for j in jf.jobs)
    assert a == {
        "prompt": "Boats, at dawn",
        "duration": 5,
        "aspect_ratio": "9:16",
        "cfg_scale": 0.25,
        "sound": True,
    }
    assert b == {"prompt": "A market", "duration": 10, "aspect_ratio": "9:16", "sound": False}
    assert c["multi_prompt"] == [{"prompt": "a", "duration": 6}]
    assert c["shot_type"] == "customize"
    assert [j.source for j in jf.jobs] == ["r.csv:2", "r.csv:3", "r.csv:4"]


def test_rows_errors_point_into_the_csv() -> None:
    csv = 'prompt,duration,aspect\n"multi\nline",x,16:9\nok,4,\nok2,3,\n'
    got = problems("jobs:\n  - {name: r, rows: r.csv}\n", r__csv=csv)
    assert got == [
        "r.csv:1:17: jobs[0].rows.aspect: unknown column 'aspect' (did you mean 'aspect_ratio'?)",
        "r.csv:3:7: jobs[0].rows[0].duration: must be an integer, not 'x'",
    ]


def test_row_with_too_many_cells_and_duplicate_columns() -> None:
    csv = "prompt,prompt\na,b\n"
    assert problems("jobs:\n  - rows: r.csv\n", r__csv=csv) == [
        "r.csv:1:8: jobs[0].rows.prompt: duplicate column 'prompt'"
    ]
    csv = "prompt\na,b\n"
    assert problems("jobs:\n  - rows: r.csv\n", r__csv=csv) == [
        "r.csv:2:3: jobs[0].rows: row has 2 cells but the header has 1 columns"
    ]


def test_rows_from_tsv_and_jsonl() -> None:
    tsv = "name\tprompt\tduration\na\tA fox\t7\n"
    jsonl = (
        '{"name": "b", "prompt": "An owl", "sound": false}\n\n{"prompt": "x", "duration": null}\n'
    )
    jf = load("jobs:\n  - rows: r.tsv\n  - rows: r.jsonl\n", r__tsv=tsv, r__jsonl=jsonl)
    assert [(j.name, dict(j.payload)) for j in jf.jobs] == [
        ("a", {"prompt": "A fox", "duration": 7}),
        ("b", {"prompt": "An owl", "sound": False}),
        ("r-x-b2c6fa", {"prompt": "x"}),
    ]


def test_jsonl_problems() -> None:
    jsonl = '[1]\n{"prompt": "a", "cfg": 1}\n{"prompt": 5}\n'
    assert problems("jobs:\n  - rows: r.jsonl\n", r__jsonl=jsonl) == [
        "r.jsonl:1:1: jobs[0].rows: each line must be a JSON object {...}",
        "r.jsonl:2:17: jobs[0].rows.cfg: unknown column 'cfg' (did you mean 'cfg_scale'?)",
        "r.jsonl:3:12: jobs[0].rows[2].prompt: must be text, not 5",
    ]


def test_rows_file_problems_are_located_at_rows() -> None:
    assert problems("jobs:\n  - rows: r.txt\n") == [
        "t.yaml:2:11: jobs[0].rows: r.txt: rows file must end in .csv, .tsv or .jsonl"
    ]
    assert problems("jobs:\n  - rows: r.csv\n", r__csv="prompt\n") == [
        "t.yaml:2:11: jobs[0].rows: r.csv: no data rows"
    ]


def test_rows_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rows_mod, "MAX_ROWS", 2)
    got = problems("jobs:\n  - rows: r.csv\n", r__csv="prompt\na\nb\nc\nd\n")
    assert got == ["r.csv:4:1: jobs[0].rows: more than 2 rows: split the file"]


def test_duplicate_names_across_rows_and_jobs() -> None:
    got = problems(
        "jobs:\n  - {name: a, prompt: p}\n  - rows: r.csv\n", r__csv="name,prompt\na,q\n"
    )
    assert got == ["r.csv:2:1: jobs[1].rows[0].name: duplicate job name 'a' (first at t.yaml:2:12)"]


# -- prices and run options ------------------------------------------------------------


def test_price_override_changes_costs() -> None:
    text = "prices: {usd_per_second: 0.1, usd_per_second_with_sound: 0.2}\njobs:\n"
    text += "  - {name: a, prompt: p, duration: 10, sound: false}\n  - {name: b, prompt: p}\n"
    jf = load(text)
    assert (jf.price.usd, jf.price.usd_with_sound) == (0.1, 0.2)
    assert [j.cost for j in jf.jobs] == [pytest.approx(1.0), pytest.approx(1.0)]


def test_partial_price_override_keeps_the_other_rate() -> None:
    jf = load("prices: {usd_per_second: 0.2}\njobs: [p]\n")
    assert (jf.price.usd, jf.price.usd_with_sound) == (0.2, 0.168)
    assert load("jobs: [p]\n").price == load_schema(DEFAULT_MODEL).price


def test_run_options() -> None:
    text = "concurrency: 4\nmax_cost: 25\nmax_attempts: 3\non_unknown: resubmit\n"
    text += "output_dir: out/x\ndeadline: 1800\njobs: [p]\n"
    assert load(text).options == RunOptions(
        concurrency=4,
        max_cost=25.0,
        max_attempts=3,
        on_unknown="resubmit",
        output_dir="out/x",
        deadline_s=1800.0,
    )
    assert load("jobs: [p]\n").options == RunOptions()


def test_bad_run_options() -> None:
    text = "concurrency: 1.5\nmax_attempts: true\ndeadline: 0\noutput_dir: ''\njobs: [p]\n"
    assert problems(text) == [
        "t.yaml:1:14: concurrency: must be an integer, not a number",
        "t.yaml:2:15: max_attempts: must be an integer, not a boolean",
        "t.yaml:3:11: deadline: must be more than 0 seconds",
        "t.yaml:4:13: output_dir: must be a folder path (text), not ''",
    ]


# -- schema files and models -----------------------------------------------------------

SCHEMA = {
    "x-model-id": "acme/m",
    "x-price": {"usd": 0.5},
    "type": "object",
    "required": ["prompt"],
    "additionalProperties": False,
    "properties": {"prompt": {"type": "string"}, "seed": {"type": "integer", "minimum": 0}},
}


def test_custom_schema_file_checks_its_fields() -> None:
    text = "schema: m.json\njobs:\n  - {prompt: p, seed: -1, duration: 5}\n"
    got = problems(text, m__json=json.dumps(SCHEMA))
    assert got == [
        f"{at(text, '-1')}: jobs[0].seed: -1 is less than the minimum of 0",
        f"{at(text, 'duration')}: jobs[0].duration: unknown key",
    ]


def test_model_must_match_the_schema_file() -> None:
    got = problems("model: acme/other\nschema: m.json\njobs: [p]\n", m__json=json.dumps(SCHEMA))
    assert got == [
        "t.yaml:1:8: model: model 'acme/other' differs from the schema file's x-model-id 'acme/m'"
    ]


def test_schema_file_without_model_id_takes_the_model_line() -> None:
    bare = {k: v for k, v in SCHEMA.items() if k != "x-model-id"}
    jf = load("model: acme/bare\nschema: m.json\njobs: [p]\n", m__json=json.dumps(bare))
    assert jf.model == "acme/bare" and jf.price.usd == 0.5
    assert jf.jobs[0].cost == pytest.approx(2.5)  # no duration default: 5 s


def test_broken_schema_file_is_a_located_problem() -> None:
    got = problems("schema: m.json\njobs: [p]\n", m__json="{nope")
    assert got == [
        "t.yaml:1:9: schema: m.json: not valid JSON "
        "(Expecting property name enclosed in double quotes at line 1)"
    ]


# -- rules -----------------------------------------------------------------------------


def test_every_problem_is_reported_at_once_and_sorted() -> None:
    text = """jobs:
  - name: a
    prompt: ""
    cfg_scale: 3
  - name: b
    prompt: p
    duration: 2
"""
    assert problems(text) == [
        "t.yaml:3:13: jobs[0].prompt: prompt is empty",
        "t.yaml:4:16: jobs[0].cfg_scale: 3 is greater than the maximum of 1",
        "t.yaml:7:15: jobs[1].duration: 2 is less than the minimum of 3",
    ]


def test_same_error_from_many_jobs_is_reported_once() -> None:
    text = "defaults: {duration: 99}\njobs:\n  - name: a\n    prompt: p\n"
    text += "    sweep: {cfg_scale: [0.1, 0.2, 0.3]}\n"
    assert problems(text) == [
        "t.yaml:1:22: defaults.duration: 99 is greater than the maximum of 15"
    ]


def test_shot_sum_uses_a_swept_duration() -> None:
    text = """jobs:
  - name: a
    prompt: p
    multi_prompt: [{prompt: x, duration: 4}, {prompt: y, duration: 4}]
    sweep: {duration: [8, 10]}
"""
    assert problems(text) == [
        "t.yaml:4:5: jobs[0].multi_prompt: shot durations sum to 8 s but duration is 10 s"
    ]


def test_warnings_for_upstream_limits() -> None:
    shots = ", ".join(f"{{prompt: s{i}, duration: 3}}" for i in range(7))
    long_shot = "y" * 513
    text = f"""jobs:
  - name: a
    prompt: p
    duration: 15
    multi_prompt: [{shots}]
  - name: b
    prompt: p
    duration: 6
    multi_prompt: [{{prompt: {long_shot}, duration: 6}}]
"""
    with pytest.raises(JobFileInvalid) as info:
        load(text)
    got = [str(p) for p in info.value.problems]
    assert got == [
        "t.yaml:5:5: warning: jobs[0].multi_prompt: 7 shots; Kling accepts at most 6",
        "t.yaml:5:5: jobs[0].multi_prompt: shot durations sum to 21 s but duration is 15 s",
        "t.yaml:9:29: warning: jobs[1].multi_prompt[0].prompt: "
        "shot prompt is 513 characters; Kling's limit is 512",
    ]


def test_short_shot_warning_with_a_lenient_schema() -> None:
    schema = {
        "x-model-id": "acme/shots",
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "duration": {"type": "integer", "default": 1},
            "multi_prompt": {"type": "array", "items": {"type": "object"}},
        },
    }
    text = "schema: m.json\njobs:\n  - prompt: p\n"
    text += "    multi_prompt: [{prompt: a, duration: 0}, {prompt: b, duration: 1}]\n"
    jf = load(text, m__json=json.dumps(schema))
    assert [str(w) for w in jf.warnings] == [
        f"{at(text, '0}')}: warning: jobs[0].multi_prompt[0].duration: "
        "shot is 0 s; Kling needs at least 1 s"
    ]


def test_shot_type_rule_for_a_schema_that_allows_other_types() -> None:
    schema = {
        "x-model-id": "acme/st",
        "type": "object",
        "properties": {
            "prompt": {"type": "string"},
            "duration": {"type": "integer"},
            "shot_type": {"type": "string", "enum": ["customize", "intelligent"]},
            "multi_prompt": {"type": "array"},
        },
    }
    text = "schema: m.json\njobs:\n  - {prompt: p, duration: 3, shot_type: intelligent,\n"
    text += "     multi_prompt: [{prompt: a, duration: 3}]}\n"
    assert problems(text, m__json=json.dumps(schema)) == [
        f"{at(text, 'intelligent')}: jobs[0].shot_type: "
        "multi_prompt needs shot_type: customize, not 'intelligent'"
    ]


QUOTED_2_1 = '"2:1"'


def test_field_problems_are_located_in_flow_and_block_style() -> None:
    text = 'jobs:\n  - {name: a, prompt: p, aspect_ratio: "2:1"}\n'
    text += "  - name: b\n    prompt: p\n    sound: 3\n"
    assert problems(text) == [
        f"{at(text, QUOTED_2_1)}: jobs[0].aspect_ratio: '2:1' is not one of '16:9', '9:16', '1:1'",
        f"{at(text, '3')}: jobs[1].sound: must be true or false, not 3",
    ]


# -- YAML details ----------------------------------------------------------------------


def test_anchors_and_merge_keys_work() -> None:
    text = """
base: &base {duration: 10, sound: false}
jobs:
  - {<<: *base, name: a, prompt: p}
  - <<: *base
    name: b
    prompt: q
    duration: 5
"""
    got = problems(text)  # `base` itself is not a known key...
    assert got == ["t.yaml:2:1: base: unknown key"]
    text = text.replace("base: &base", "defaults: &base")  # ...but anchors may live in defaults
    jf = load(text)
    assert [j.payload["duration"] for j in jf.jobs] == [10, 5]


def test_recursive_alias_and_keys_as_text() -> None:
    assert problems("jobs: &j [*j]\n") == [
        "t.yaml:1:7: jobs[0]: recursive alias (a value that contains itself)",
        "t.yaml:1:7: jobs[0]: a job must be a mapping (or a prompt text), not nothing (null)",
    ]
    got = problems("jobs:\n  - prompt: 2024-01-01\n    yes: 1\n")
    assert got == ["t.yaml:3:5: jobs[0].yes: unknown key"]  # the date stays text: no type error


def test_loads_jobfile_needs_no_file() -> None:
    jf = loads_jobfile("jobs: [A fox]\n", path=Path("mem/x.yaml"))
    assert jf.run == "x" and jf.jobs[0].source == "mem/x.yaml:1"


def test_unreadable_file_raises_job_file_error() -> None:
    with pytest.raises(JobFileError, match=r"^nope\.yaml: no such file$"):
        load_jobfile(Path("nope.yaml"))
    Path("bom.yaml").write_bytes("\ufeffjobs: [p]\n".encode())
    assert len(load_jobfile(Path("bom.yaml")).jobs) == 1


def test_empty_sections_and_a_default_repeat() -> None:
    text = "vars:\nprices:\ndefaults:\n  repeat: 2\n"
    jf = load(text + "jobs:\n  - A fox\n  - {prompt: An owl, repeat: 1}\n")
    assert [j.key for j in jf.jobs] == ["t/job-1", "t/job-1#2", "t/job-2"]


def test_cost_of_a_schema_whose_duration_is_not_a_number() -> None:
    schema = {
        "x-model-id": "acme/text-duration",
        "x-price": {"usd": 0.1},
        "type": "object",
        "properties": {"prompt": {"type": "string"}, "duration": {"type": "string"}},
    }
    jf = load(
        'schema: m.json\njobs:\n  - {prompt: p, duration: "5s"}\n', m__json=json.dumps(schema)
    )
    assert jf.jobs[0].cost == pytest.approx(0.5)  # the 5 s fallback, not a crash


def test_exponent_numbers_are_numbers() -> None:
    jf = load("jobs:\n  - {prompt: p, cfg_scale: 1e-3}\n")  # YAML 1.1 would read text
    assert jf.jobs[0].payload["cfg_scale"] == 0.001
    assert problems("jobs:\n  - {prompt: p, cfg_scale: '1e-3'}\n") == [
        "t.yaml:2:28: jobs[0].cfg_scale: must be a number, not '1e-3' (remove the quotes)"
    ]


def test_rows_without_names_keep_their_names_when_rows_are_inserted() -> None:
    rows = "prompt\nA red fox in snow\nA lighthouse at night\nA red fox in snow\n"
    before = load("jobs:\n  - rows: r.csv\n", r__csv=rows)
    after = load("jobs:\n  - rows: r.csv\n", r__csv="prompt\nA new first row\n" + rows[7:])
    old = {j.key: j.fingerprint for j in before.jobs}
    new = {j.key: j.fingerprint for j in after.jobs}
    assert len(old) == 3 and set(old) < set(new) and len(new) == 4
    assert all(new[k] == fp for k, fp in old.items())  # nothing renamed, nothing changed
    names = [j.name for j in before.jobs]
    assert names[0].startswith("r-a-red-fox-in-") and names[2] == names[0] + "-2"


def test_an_unquoted_aspect_ratio_is_text_not_a_base_60_number() -> None:
    jf = load("jobs:\n  - prompt: a fox\n    sweep: {aspect_ratio: [9:16, 1:1]}\n")
    assert sorted(j.payload["aspect_ratio"] for j in jf.jobs) == ["1:1", "9:16"]
    jf = load("jobs:\n  - prompt: a fox\n    aspect_ratio: 16:9\n")
    assert jf.jobs[0].payload["aspect_ratio"] == "16:9"


def test_a_semicolon_separated_csv_gets_a_hint() -> None:
    with pytest.raises(JobFileInvalid) as info:
        load("jobs:\n  - rows: r.csv\n", r__csv="prompt;duration\nA fox;5\n")
    assert "separated by ';'" in str(info.value.problems[0])


def test_a_duplicated_job_still_gets_its_other_problems_reported() -> None:
    with pytest.raises(JobFileInvalid) as info:
        load('jobs:\n  - name: a\n    prompt: x\n  - name: a\n    prompt: ""\n')
    found = [p.what for p in info.value.problems]
    assert any("duplicate job name" in w for w in found)
    assert any("prompt is empty" in w for w in found)
