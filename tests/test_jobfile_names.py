"""Slugs, keys, output names and canonical JSON, case by case."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from batcher.jobfile import names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fox", "fox"),
        ("Red Fox!", "Red-Fox"),
        ("café crème", "cafe-creme"),
        ("../../etc/passwd", "etc-passwd"),
        ("a/b\\c", "a-b-c"),
        ("a..b", "a.b"),
        (".hidden", "hidden"),
        ("-rf", "rf"),
        ("trailing.", "trailing"),
        ("CON", "_CON"),
        ("nul.txt", "_nul.txt"),
        ("com7", "_com7"),
        ("console", "console"),
    ],
)
def test_slug(text: str, expected: str) -> None:
    assert names.slug(text) == expected


def test_no_output_name_contains_the_mark_of_derived_file_names() -> None:
    # `~` marks a second output (NAME~2) or an earlier version (NAME~v2): never a job's own
    assert names.slug("clip~2") == "clip-2" and names.slug("clip~v2") == "clip-v2"
    assert "~" not in names.output_stem("a~b", [names.name_part("x~y", "1~2")], 1)


def test_slug_falls_back_with_a_hash_when_nothing_is_left() -> None:
    a, b = names.slug("日本"), names.slug("中国")
    assert a.startswith("job-") and b.startswith("job-") and a != b
    assert names.slug("") == f"job-{names.short_hash('')}"
    assert names.slug("job") == "job"  # a plain name is not hashed


def test_slug_truncates_with_a_hash_of_the_whole_text() -> None:
    a, b = names.slug("x" * 300 + "a"), names.slug("x" * 300 + "b")
    assert len(a) == names.MAX_STEM and len(b) == names.MAX_STEM and a != b


def test_keys_escape_their_separators() -> None:
    plain = names.job_key("r", "a", [names.key_part("cfg_scale", 0.5)], 0)
    tricky = names.job_key("r", "a/cfg_scale=0.5", [], 0)
    assert plain == "r/a/cfg_scale=0.5"
    assert tricky == "r/a%2Fcfg_scale%3D0.5"
    assert names.job_key("r", "a#2", [], 0) != names.job_key("r", "a", [], 1)
    assert names.job_key("r", "line\nbreak", [], 0) == "r/line%0Abreak"


def test_key_parts_and_name_parts() -> None:
    assert names.key_part("aspect_ratio", "16:9") == "aspect_ratio=16:9"
    assert names.key_part("sound", False) == "sound=false"
    assert names.name_part("aspect_ratio", "16:9") == "aspect_ratio-16x9"
    assert names.name_part("cfg_scale", 0.3) == "cfg_scale-0.3"
    long = names.name_part("prompt", "A red fox trotting through fresh snow")
    text = "A red fox trotting through fresh snow"
    assert long == f"prompt-A-red-fox-trotti-{names.short_hash(text, 6)}"
    shots = names.name_part("multi_prompt", [{"prompt": "a", "duration": 5}])
    assert shots.startswith("multi_prompt-v") and len(shots) == len("multi_prompt-v") + 8


def test_output_stem_and_repeat_suffix() -> None:
    parts = [names.name_part("cfg_scale", 0.3)]
    assert names.output_stem("fox", parts, 0) == "fox__cfg_scale-0.3"
    assert names.output_stem("fox", parts, 1) == "fox__cfg_scale-0.3__r2"
    long = names.output_stem("y" * 200, parts, 0)
    assert len(long) == names.MAX_STEM


def test_unique_stems_case_insensitively_and_first_come_keeps_its_name() -> None:
    unique = names.UniqueStems()
    got = {
        k: unique.add(k, stem)
        for k, stem in [("r/fox", "fox"), ("r/Fox", "Fox"), ("r/fox!", "fox")]
    }
    assert got["r/fox"] == "fox"
    assert got["r/Fox"] == f"Fox-{names.short_hash('r/Fox')}"
    assert got["r/fox!"] == f"fox-{names.short_hash('r/fox!')}"
    assert len({s.casefold() for s in got.values()}) == 3


def test_canonical_json() -> None:
    a = names.canonical_json(names.normalize({"b": 5.0, "a": [0.50, True, "é"]}))
    assert a == '{"a":[0.5,true,"é"],"b":5}'
    assert names.fingerprint("m", a) != names.fingerprint("n", a)
    assert len(names.fingerprint("m", a)) == 64


@given(st.text(alphabet="aZ09_.-~ Ñ", max_size=14) | st.sampled_from(["con", "Nul.x", "a" * 120]))
@settings(max_examples=300, deadline=None)
def test_slug_fast_path_gives_what_the_full_steps_give(text: str) -> None:
    for max_len in (names.MAX_STEM, 10_000, 8):
        want = names._slug(text, fallback="job", max_len=max_len)
        assert names.slug(text, max_len=max_len) == want
