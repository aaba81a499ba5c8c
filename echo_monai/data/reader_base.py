"""Shared machinery of the dataset readers: bad-input policy, aggregated errors, loading on access.

Every reader indexes its source at construction (cheap structural checks: files exist, CSV rows have their
video, tracings refer to existing frames) and decodes on access. Content checks that need the pixels (corrupt
AVI, label values, image/label sizes, DICOM pixel data) run at access, or for every item at construction when
``validate=True`` (the default with ``on_invalid="skip"``, so a skipping dataset never fails mid-epoch).

Problems are never raised one at a time: with ``on_invalid="raise"`` the reader gathers every problem and raises
one error listing them all (:class:`MissingFilesError` when files are missing, :class:`InvalidItemError`
otherwise); with ``on_invalid="skip"`` the items are dropped, each one logged, and ``dataset.invalid`` keeps the
``(item, reason)`` report.

Index metadata (CSV rows, cfg files) is parsed with :class:`FieldChecker`, which range-checks every field and
gathers every problem of a row into one reason naming the file, the field, its value and what was expected.
"""

from __future__ import annotations

import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from monai.data import Dataset
from monai.utils import StrEnum

__all__ = ["OnInvalid", "InvalidItemError", "MissingFilesError", "FieldChecker", "ReaderDataset", "dataset_name"]

logger = logging.getLogger(__name__)


def dataset_name(dataset: Any) -> str:
    """How a dataset is named in messages: its class with the folder and split it reads, when it has them."""
    details = [f"{k}={getattr(dataset, k)!r}" for k in ("root", "split", "cache_dir") if hasattr(dataset, k)]
    data = getattr(dataset, "data", None)
    if not details and data is not dataset and hasattr(data, "root"):  # a Dataset over a reader or latent cache
        return f"{type(dataset).__name__} of {dataset_name(data)}"
    return f"the dataset {type(dataset).__name__}({', '.join(details)})"


class OnInvalid(StrEnum):
    """What a reader does with an invalid item: ``raise`` one error listing all problems, or ``skip`` it."""

    RAISE = "raise"
    SKIP = "skip"


class InvalidItemError(ValueError):
    """An item of a dataset is malformed; the message names the file and what was expected.

    Attributes:
        problems: ``(item, reason)`` pairs, one per invalid item.
    """

    def __init__(self, message: str, problems: Sequence[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.problems = list(problems)


class MissingFilesError(InvalidItemError, FileNotFoundError):
    """Files a dataset needs are missing; the message lists every one of them (and any other problem found)."""


def _format_problems(dataset: str, problems: Sequence[tuple[str, str]], limit: int = 50) -> str:
    lines = [f"  {item}: {reason}" for item, reason in problems[:limit]]
    if len(problems) > limit:
        lines.append(f"  ... and {len(problems) - limit} more")
    return f"{dataset}: {len(problems)} invalid item(s):\n" + "\n".join(lines)


def _text(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    return "" if value is None else str(value).strip()


def _expected_number(minimum: float | None, maximum: float | None, above: float | None, integer: bool) -> str:
    kind = "an integer" if integer else "a finite number"
    if minimum is not None and maximum is not None:
        return f"{kind} in [{minimum:g}, {maximum:g}]"
    if above is not None:
        return f"{kind} > {above:g}"
    if minimum is not None:
        return f"{kind} >= {minimum:g}"
    if maximum is not None:
        return f"{kind} <= {maximum:g}"
    return kind


class FieldChecker:
    """Parse and range-check the fields of one index entry (a CSV row, a cfg file), gathering every problem.

    Each method returns the parsed value, or the absent value (NaN, ``""``) for a field that is absent, empty or
    invalid, so that parsing goes on; a problem is recorded for an invalid field and for an absent one that is
    ``required``. The reader rejects the item with :attr:`reason` when :attr:`problems` is not empty.

    Args:
        source: where the fields come from, e.g. ``"'root/FileList.csv' line 3"``; :attr:`reason` starts with it.

    Example:
        >>> fields = FieldChecker("'FileList.csv' line 2")
        >>> ef = fields.number({"EF": "150"}, "EF", minimum=0, maximum=100)   # NaN, problem recorded
        >>> fields.reason   # "'FileList.csv' line 2: EF '150' is out of range; expected a finite number in [0, 100]"
    """

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    @property
    def reason(self) -> str:
        """The source followed by every problem found, ``"; "``-separated."""
        return f"{self.source}: " + "; ".join(self.problems)

    def check(self, condition: bool, problem: str) -> bool:
        """Record ``problem`` unless ``condition`` holds; returns ``condition``."""
        if not condition:
            self.problems.append(problem)
        return bool(condition)

    def number(
        self,
        fields: Mapping[str, Any],
        key: str,
        minimum: float | None = None,
        maximum: float | None = None,
        above: float | None = None,
        integer: bool = False,
        required: bool = True,
        unit: str = "",
    ) -> float:
        """A numeric field, checked to be finite and in range.

        Args:
            fields: the entry's ``{field: text}``.
            key: field name.
            minimum: smallest allowed value (inclusive).
            maximum: largest allowed value (inclusive).
            above: exclusive lower bound (e.g. 0 for a frame rate).
            integer: the value must be a whole number.
            required: an absent or empty field is a problem; else it reads as NaN.
            unit: unit of the value, shown in the expectation (``"%"``, ``"mL"``).

        Returns:
            The value, NaN when absent, empty or invalid.
        """
        text = _text(fields, key)
        expected = _expected_number(minimum, maximum, above, integer) + (f" {unit}" if unit else "")
        if not text:
            self.check(not required, f"no {key}; expected {expected}")
            return math.nan
        try:
            value = float(text)
        except ValueError:
            self.problems.append(f"non-numeric {key} {text!r}; expected {expected}")
            return math.nan
        valid = (
            math.isfinite(value)
            and (minimum is None or value >= minimum)
            and (maximum is None or value <= maximum)
            and (above is None or value > above)
            and (not integer or value.is_integer())
        )
        if not valid:
            self.problems.append(f"{key} {text!r} is out of range; expected {expected}")
            return math.nan
        return value

    def choice(
        self, fields: Mapping[str, Any], key: str, allowed: Sequence[str], required: bool = False, upper: bool = False
    ) -> str:
        """An enumerated text field, checked against the allowed values.

        Args:
            fields: the entry's ``{field: text}``.
            key: field name.
            allowed: the known values.
            required: an absent or empty field is a problem; else it reads as ``""``.
            upper: compare (and return) the value upper-cased.

        Returns:
            The value, ``""`` when absent, empty or unknown.
        """
        text = _text(fields, key)
        value = text.upper() if upper else text
        if not text:
            self.check(not required, f"no {key}; expected one of {list(allowed)}")
            return ""
        if not self.check(value in allowed, f"unknown {key} {text!r}; expected one of {list(allowed)}"):
            return ""
        return value

    def volumes(self, edv: float, esv: float, edv_key: str = "EDV", esv_key: str = "ESV") -> None:
        """Check that an end-diastolic volume is not below the end-systolic one when both are known."""
        if math.isfinite(edv) and math.isfinite(esv):
            self.check(edv >= esv, f"{edv_key} {edv:g} < {esv_key} {esv:g}; expected {edv_key} >= {esv_key}")


class ReaderDataset(Dataset, ABC):
    """Base of the readers: a MONAI ``Dataset`` over index records that loads each record on access.

    Subclasses build a list of records (dicts of paths and metadata) calling :meth:`reject` for each bad one and
    :meth:`_finalize` with the good ones; they implement :meth:`load_record`, which returns the item dict and
    raises ``FileNotFoundError``/``ValueError`` naming the file for bad content.

    Args:
        transform: MONAI transform (or sequence of transforms) applied to each loaded item dict.
        on_invalid: ``"raise"`` (default) or ``"skip"``; see the module docstring.
        validate: load every item once at construction to find content problems early; ``None`` means
            ``on_invalid == "skip"``.

    Attributes:
        invalid: ``(item, reason)`` pairs of the skipped items (empty with ``on_invalid="raise"``).
    """

    def __init__(
        self,
        transform: Sequence[Callable] | Callable | None = None,
        on_invalid: OnInvalid | str = OnInvalid.RAISE,
        validate: bool | None = None,
    ) -> None:
        try:
            self.on_invalid = OnInvalid(on_invalid)
        except ValueError as error:
            raise ValueError(
                f"{type(self).__name__}: on_invalid must be one of {[m.value for m in OnInvalid]}, got {on_invalid!r}."
            ) from error
        self.validate = self.on_invalid == OnInvalid.SKIP if validate is None else bool(validate)
        self.invalid: list[tuple[str, str]] = []
        self._pending: list[tuple[str, str, bool]] = []
        super().__init__(data=[], transform=transform)

    # --- building the index -------------------------------------------------------------------------------------
    def reject(self, item: str, reason: str, missing: bool = False) -> None:
        """Record an invalid item found while indexing (raised or skipped in :meth:`_finalize`).

        Args:
            item: identifier of the item (its file name or path).
            reason: what is wrong and what was expected.
            missing: True when the problem is a missing file.
        """
        self._pending.append((str(item), reason, missing))

    def _finalize(self, records: list[dict[str, Any]], key: str = "item") -> None:
        """Store the valid records, validating their content if asked, then raise or report the problems.

        Args:
            records: index records that passed the structural checks.
            key: record field that identifies an item in reports.
        """
        if self.validate:
            kept = []
            for record in records:
                try:
                    self.load_record(record)
                except (OSError, ValueError) as error:
                    self.reject(record[key], str(error), missing=isinstance(error, FileNotFoundError))
                else:
                    kept.append(record)
            records = kept
        pending, self._pending = self._pending, []
        name = type(self).__name__
        if pending and self.on_invalid == OnInvalid.RAISE:
            problems = [(item, reason) for item, reason, _ in pending]
            missing = [item for item, _, is_missing in pending if is_missing]
            message = _format_problems(name, problems)
            if missing:
                raise MissingFilesError(f"{name}: {len(missing)} missing file(s).\n{message}", problems)
            raise InvalidItemError(message, problems)
        for item, reason, _ in pending:
            logger.warning("%s: skipping %s: %s", name, item, reason)
        self.invalid = [(item, reason) for item, reason, _ in pending]
        if self.invalid:
            logger.warning("%s: skipped %d invalid item(s), kept %d.", name, len(self.invalid), len(records))
        self.data = records

    # --- access ---------------------------------------------------------------------------------------------------
    @abstractmethod
    def load_record(self, record: Mapping[Hashable, Any]) -> dict[str, Any]:
        """Load one index record into the item dict documented by the subclass."""

    def _transform(self, index: int) -> Any:
        return self.transform(self.load_record(self.data[index]))
