"""The YAML export round-trips: load the exported job file -> same keys, payloads,
fingerprints (and output names), against the real job-file loader and state store."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from batcher.errors import JobFileInvalid, UsageError
from batcher.jobfile import loads_jobfile
from batcher.models import JobRecord, JobSpec, JobState
from batcher.report import NotReproducible, render_yaml
from batcher.store import Store
from tests.test_report_samples import LONG_PROMPT, SCRIPT_END, SCRIPT_TAG, UNICODE

SOURCE = f"""
model: kling/kling-3.0/pro/text-to-video
name: tuscany
defaults:
  duration: 5
  aspect_ratio: "16:9"
  sound: true
  negative_prompt: "blur, watermark, {{{{literal}}}} text {{ not a var }}"
vars:
  camera: "shot on Arri Alexa 35, anamorphic lenses"
jobs:
  - name: terrace
    prompt: "Candlelit terrace dinner in Tuscany at golden hour, {{camera}}"
  - name: terrace-shots
    prompt: "Anniversary dinner on a Tuscan terrace"
    duration: 12
    multi_prompt:
      - {{prompt: "Wide establishing shot over vineyard hills, {{camera}}", duration: 4}}
      - {{prompt: "Slow dolly-in on the stone terrace", duration: 4}}
      - {{prompt: "Crane pull-back revealing the villa at sunset", duration: 4}}
  - name: fox
    prompt: "A red fox trotting through fresh snow"
    sweep:
      cfg_scale: [0.8, 0.3, 0.5]
      aspect_ratio: ["16:9", "9:16"]
    repeat: 2
  - name: "odd / name, with = signs #1"
    prompt: {yaml.safe_dump(SCRIPT_TAG + SCRIPT_END + UNICODE).strip()!s}
    sweep:
      sound: [true, false]
  - {yaml.safe_dump(LONG_PROMPT, width=80).strip()!s}
"""


def _record(spec: JobSpec, n: int, *, current: bool = True, version: int = 1) -> JobRecord:
    return JobRecord(
        id=n, run=spec.run, key=spec.key, name=spec.name, version=version, current=current,
        model=spec.model, fingerprint=spec.fingerprint, payload=spec.payload, sweep=spec.sweep,
        repeat=spec.repeat, output_name=spec.output_name, out_dir="/tmp/out",
        state=JobState.DONE, request_id=f"req-{n}", attempts=(), error=None, outputs=(),
        cost=spec.cost, created_at=0.0, submitted_at=None, finished_at=None,
    )  # fmt: skip


def _load(text: str, name: str = "jobs.yaml") -> tuple[JobSpec, ...]:
    return loads_jobfile(text, path=Path("/nonexistent") / name).jobs


def _same(a: tuple[JobSpec, ...] | list[JobSpec], b: tuple[JobSpec, ...]) -> None:
    def view(specs: tuple[JobSpec, ...] | list[JobSpec]) -> list[tuple]:
        return [
            (s.key, s.fingerprint, dict(s.payload), s.model, s.output_name, dict(s.sweep))
            for s in specs
        ]

    assert view(a) == view(b)


def test_export_of_a_rich_file_loads_back_identical() -> None:
    specs = _load(SOURCE)
    assert len(specs) == 1 + 1 + 12 + 2 + 1
    text = render_yaml([_record(s, i) for i, s in enumerate(specs)])
    assert text.startswith("# Reproduces run 'tuscany': 5 job entries")
    _same(specs, _load(text, "export.yaml"))
    doc = yaml.safe_load(text)
    assert doc["name"] == "tuscany" and "vars" not in doc and "defaults" not in doc
    fox = next(j for j in doc["jobs"] if j["name"] == "fox")
    assert fox["sweep"] == {"aspect_ratio": ["16:9", "9:16"], "cfg_scale": [0.8, 0.3, 0.5]}
    assert fox["repeat"] == 2


def test_superseded_versions_are_not_exported() -> None:
    specs = _load(SOURCE)
    old = dataclasses.replace(specs[0], payload={**specs[0].payload, "prompt": "OLD VERSION"})
    records = [_record(old, 0, current=False)] + [_record(s, i + 1) for i, s in enumerate(specs)]
    text = render_yaml(records)
    assert "OLD VERSION" not in text
    _same(specs, _load(text))


def test_a_narrowed_and_edited_sweep_cannot_be_written_as_one_entry() -> None:
    before = _load(SOURCE)
    narrowed = _load(
        SOURCE.replace("cfg_scale: [0.8, 0.3, 0.5]", "cfg_scale: [0.3, 0.5]").replace(
            "through fresh snow", "through deep snow"
        )
    )
    orphans = {s.key for s in before} - {s.key for s in narrowed}
    assert len(orphans) == 4
    edited = {s.key: s for s in narrowed}
    # what the store holds after running both files: the 0.8 keys stay current with the
    # old prompt, the others have a new version with the new one
    current = [edited.get(s.key, s) for s in before]
    records = [_record(s, i) for i, s in enumerate(current)]
    with pytest.raises(NotReproducible) as caught:
        render_yaml(records)
    assert set(caught.value.reasons) == {s.key for s in before if s.name == "fox"}
    assert "12 job(s) cannot be reproduced" in str(caught.value)
    partial = render_yaml(records, partial=True)
    assert "# Left out: 12 job(s)" in partial
    _same([s for s in current if s.name != "fox"], _load(partial))


def test_a_narrowed_sweep_alone_still_exports_the_full_sweep() -> None:
    before = _load(SOURCE)
    narrowed = {s.key: s for s in _load(SOURCE.replace("[0.8, 0.3, 0.5]", "[0.3, 0.5]"))}
    current = [narrowed.get(s.key, s) for s in before]  # same payloads: no new versions
    _same(before, _load(render_yaml([_record(s, i) for i, s in enumerate(current)])))


def test_copies_with_a_gap_or_an_edit_are_not_reproducible() -> None:
    specs = [s for s in _load(SOURCE) if s.name == "fox"]
    with pytest.raises(NotReproducible, match="copies are not numbered"):
        render_yaml([_record(s, i) for i, s in enumerate(specs) if s.repeat == 1])
    edited = [
        dataclasses.replace(s, payload={**s.payload, "duration": 10}) if i == 0 else s
        for i, s in enumerate(specs)
    ]
    with pytest.raises(NotReproducible, match="differ in fields that are not swept"):
        render_yaml([_record(s, i) for i, s in enumerate(edited)])


def test_one_run_and_one_model_with_current_jobs_are_required() -> None:
    spec = _load(SOURCE)[0]
    with pytest.raises(UsageError, match="no current jobs"):
        render_yaml([_record(spec, 0, current=False)])
    other = dataclasses.replace(spec, key="tuscany/x", name="x", model="some/other-model")
    with pytest.raises(UsageError, match="several models"):
        render_yaml([_record(spec, 0), _record(other, 1)])


_TEXT = st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=60
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=_TEXT.filter(lambda t: t.strip()), name=_TEXT.filter(lambda t: t.strip()))
def test_any_prompt_and_job_name_round_trip(prompt: str, name: str) -> None:
    source = yaml.safe_dump(
        {"name": "prop", "jobs": [{"name": name.strip(), "prompt": prompt.replace("{", "{{")}]}
    )
    try:
        specs = _load(source)
    except JobFileInvalid:  # the loader may refuse some text (e.g. control characters)
        return
    _same(specs, _load(render_yaml([_record(s, i) for i, s in enumerate(specs)])))


def test_export_against_the_same_state_is_all_done(tmp_path: Path) -> None:
    """What `batcher plan` sees: syncing the exported file changes nothing."""
    specs = _load(SOURCE)
    with Store.open(tmp_path / "state.db") as store:
        store.upsert_run("tuscany", model=specs[0].model, job_file=None, out_dir="/o", options={})
        assert len(store.sync_jobs("tuscany", specs).new) == len(specs)
        exported = _load(render_yaml(store.records("tuscany")))
        again = store.sync_jobs("tuscany", exported)
    assert (again.new, again.changed) == ((), ())
    assert set(again.unchanged) == {s.key for s in specs}
