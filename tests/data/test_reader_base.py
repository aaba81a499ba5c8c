from __future__ import annotations

import math

import pytest

from echo_monai.data import InvalidItemError, MissingFilesError, ReaderDataset


class _Toy(ReaderDataset):
    """Items are ints; negative ones are 'missing', odd ones fail their content check."""

    def __init__(self, values, **kwargs):
        super().__init__(**kwargs)
        records = []
        for value in values:
            if value < 0:
                self.reject(f"item{value}", "file is missing.", missing=True)
            else:
                records.append({"item": f"item{value}", "value": value})
        self._finalize(records)

    def load_record(self, record):
        if record["value"] % 2:
            raise ValueError(f"{record['item']} is odd; expected an even value.")
        return {"value": record["value"]}


def test_missing_files_error_is_both_kinds_and_lists_everything():
    with pytest.raises(MissingFilesError) as info:
        _Toy([-1, 2, -3], validate=False)
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, InvalidItemError)
    assert info.value.problems == [("item-1", "file is missing."), ("item-3", "file is missing.")]


def test_content_problems_raise_invalid_item_error_when_validating():
    with pytest.raises(InvalidItemError, match="item3 is odd") as info:
        _Toy([2, 3], validate=True)
    assert not isinstance(info.value, FileNotFoundError)
    with pytest.raises(ValueError, match="item3 is odd"):
        _Toy([2, 3])[1]  # without validation the problem surfaces on access


def test_skip_keeps_good_items_and_reports(caplog):
    dataset = _Toy([-1, 2, 3, 4], on_invalid="skip", transform=lambda d: {"value": d["value"] * 10})
    assert [dataset[i]["value"] for i in range(len(dataset))] == [20, 40]
    assert [item for item, _ in dataset.invalid] == ["item-1", "item3"]
    assert "skipping item3" in caplog.text and "skipped 2 invalid item(s)" in caplog.text


def test_long_reports_are_truncated_and_bad_policy_rejected():
    with pytest.raises(MissingFilesError, match=r"\.\.\. and 10 more") as info:
        _Toy(range(-1, -61, -1))
    assert len(info.value.problems) == 60
    with pytest.raises(ValueError, match="on_invalid"):
        _Toy([2], on_invalid="warn")


def test_field_checker_parses_ranges_and_gathers_problems():
    from echo_monai.data.reader_base import FieldChecker

    fields = FieldChecker("'list.csv' line 2")
    row = {"EF": "55.5", "FPS": "", "N": "3", "Split": "val", "EDV": "10", "ESV": "20"}
    assert fields.number(row, "EF", minimum=0, maximum=100) == 55.5
    assert math.isnan(fields.number(row, "FPS", above=0, required=False)) and not fields.problems
    assert fields.number(row, "N", minimum=1, integer=True) == 3
    assert fields.choice(row, "Split", ("TRAIN", "VAL"), upper=True) == "VAL"
    assert fields.choice(row, "Sex", ("M", "F")) == "" and not fields.problems  # absent and optional
    assert math.isnan(fields.number(row, "FPS", above=0))  # absent and required
    assert fields.problems == ["no FPS; expected a finite number > 0"]
    fields.number({"EF": "150"}, "EF", minimum=0, maximum=100, unit="%")
    fields.number({"N": "2.5"}, "N", minimum=1, integer=True)
    fields.choice({"Sex": "X"}, "Sex", ("M", "F"))
    fields.volumes(10.0, 20.0)
    fields.volumes(float("nan"), 20.0)  # unknown EDV: nothing to compare
    assert fields.reason == (
        "'list.csv' line 2: no FPS; expected a finite number > 0; EF '150' is out of range; expected a finite number "
        "in [0, 100] %; N '2.5' is out of range; expected an integer >= 1; unknown Sex 'X'; expected one of "
        "['M', 'F']; EDV 10 < ESV 20; expected EDV >= ESV"
    )
