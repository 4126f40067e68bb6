"""Sweep grids: grouping, axis choice and layout (pure functions, no browser)."""

from __future__ import annotations

from dataclasses import replace

from batcher.report.grid import (
    MISSING,
    choose_axes,
    group_records,
    layout,
    sweep_axes,
    value_label,
)
from tests.test_report_samples import make_record


def _fox(cfgs: list[float], ars: list[str], repeats: int = 1, name: str = "fox") -> list:
    return [
        make_record(name=name, sweep={"cfg_scale": c, "aspect_ratio": a}, repeat=r)
        for c in cfgs
        for a in ars
        for r in range(repeats)
    ]


def test_value_labels_are_plain_for_text_and_json_for_the_rest() -> None:
    assert value_label("16:9") == "16:9"
    assert value_label(0.3) == "0.3"
    assert value_label(True) == "true"
    assert value_label([{"b": 1, "a": "é"}]) == '[{"a": "é", "b": 1}]'


def test_axis_with_most_values_goes_on_rows_and_numbers_sort_numerically() -> None:
    axes = sweep_axes(_fox([0.8, 0.3, 0.5], ["9:16", "16:9"]))
    assert [(a.field, a.labels) for a in axes] == [
        ("cfg_scale", ("0.3", "0.5", "0.8")),
        ("aspect_ratio", ("9:16", "16:9")),  # text keeps first-seen order
    ]
    assert choose_axes(axes) == ("cfg_scale", "aspect_ratio")


def test_ties_keep_the_first_swept_field_on_rows() -> None:
    records = [
        make_record(sweep={"sound": s, "duration": d}) for s in (True, False) for d in (5, 10)
    ]
    assert choose_axes(sweep_axes(records)) == ("sound", "duration")


def test_one_swept_field_makes_a_single_row_and_none_a_single_cell() -> None:
    one = sweep_axes([make_record(sweep={"cfg_scale": c}) for c in (0.1, 0.2)])
    assert choose_axes(one) == (None, "cfg_scale")
    assert choose_axes(()) == (None, None)


def test_three_axes_put_the_third_inside_cells() -> None:
    records = [
        make_record(sweep={"cfg_scale": c, "aspect_ratio": a, "sound": s})
        for c in (0.1, 0.2, 0.3)
        for a in ("16:9", "1:1")
        for s in (True, False)
    ]
    (group,), plain = group_records(records)
    assert plain == []
    assert group.default_layout == ("cfg_scale", "aspect_ratio")
    grid = layout(group, "cfg_scale", "aspect_ratio")
    assert [len(line) for line in grid] == [2, 2, 2]
    assert all(len(cell.records) == 2 for line in grid for cell in line)


def test_layout_puts_repeats_side_by_side_in_repeat_order() -> None:
    records = list(reversed(_fox([0.3, 0.5], ["16:9", "9:16"], repeats=3)))
    (group,), _ = group_records(records)
    grid = layout(group, *group.default_layout)
    assert [[c.row for c in line] for line in grid] == [["0.3", "0.3"], ["0.5", "0.5"]]
    assert [c.col for c in grid[0]] == ["9:16", "16:9"]  # text: first seen (reversed input)
    cell = grid[1][1]
    assert [r.repeat for r in cell.records] == [0, 1, 2]
    assert {r.sweep["cfg_scale"] for r in cell.records} == {0.5}
    assert {r.sweep["aspect_ratio"] for r in cell.records} == {"16:9"}


def test_switched_layout_transposes_the_grid() -> None:
    (group,), _ = group_records(_fox([0.3, 0.5, 0.8], ["16:9", "9:16"]))
    grid = layout(group, "aspect_ratio", "cfg_scale")
    assert len(grid) == 2 and all(len(line) == 3 for line in grid)
    single = layout(group, None, None)
    assert len(single) == 1 and len(single[0][0].records) == 6


def test_groups_follow_job_names_and_unswept_jobs_share_one_gallery() -> None:
    records = [
        make_record(name="a"),
        *_fox([0.3, 0.5], ["16:9"], name="fox"),
        make_record(name="b"),
        *_fox([0.1], ["1:1", "9:16"], name="owl"),
    ]
    groups, plain = group_records(records)
    assert [g.name for g in groups] == ["fox", "owl"]
    assert [r.name for r in plain] == ["a", "b"]


def test_a_job_missing_a_swept_field_lands_under_the_missing_label() -> None:
    records = [*_fox([0.3], ["16:9"]), make_record(name="fox", sweep={"cfg_scale": 0.3})]
    (group,), _ = group_records(records)
    aspect = next(a for a in group.axes if a.field == "aspect_ratio")
    assert aspect.labels == ("16:9", MISSING)
    grid = layout(group, "aspect_ratio", "cfg_scale")
    assert [len(line[0].records) for line in grid] == [1, 1]


def test_shared_payload_is_what_every_job_of_a_group_has_in_common() -> None:
    (group,), _ = group_records(_fox([0.3, 0.5], ["16:9", "9:16"]))
    assert group.shared == {"prompt": "A red fox trotting through fresh snow", "duration": 5}


def test_a_csv_row_sweep_is_one_grid_rows_by_columns() -> None:
    """Issue 12: 20 rows x 2 cfg were 20 separate 1x2 mini-grids; one grid now: rows =
    the prompt rows (in file order), columns = the swept parameter."""
    names = [f"r{i}" for i in (3, 1, 2)]  # file order, not sorted
    records = [
        replace(make_record(name=n, prompt=f"prompt {n}", sweep={"cfg_scale": c}), rows_of="p")
        for n in names
        for c in (0.7, 0.4)
    ]
    plain_job = make_record(name="solo")
    groups, plain = group_records([*records, plain_job])
    assert plain == [plain_job]
    [group] = groups
    assert group.name == "p" and len(group.records) == 6
    assert group.default_layout == ("row", "cfg_scale")
    grid = layout(group, *group.default_layout)
    assert [line[0].row for line in grid] == names
    assert [c.col for c in grid[0]] == ["0.4", "0.7"]
    assert all(len(c.records) == 1 and c.records[0].name == c.row for line in grid for c in line)


def test_rows_without_a_sweep_stay_in_the_plain_gallery_and_a_row_field_keeps_its_name() -> None:
    unswept = [replace(make_record(name=f"r{i}"), rows_of="p") for i in range(3)]
    groups, plain = group_records(unswept)
    assert groups == [] and plain == unswept
    clash = [
        replace(make_record(name=f"r{i}", sweep={"row": v}), rows_of="p")
        for i in range(2)
        for v in (1, 2)
    ]
    [group] = group_records(clash)[0]
    assert [a.field for a in group.axes] == ["(row)", "row"]
    assert group.default_layout == ("(row)", "row")
