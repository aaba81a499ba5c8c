"""Shared machinery of the dataset readers: bad-input policy, aggregated errors, loading on access.

Every reader indexes its source at construction (cheap structural checks: files exist, CSV rows have their
video, tracings refer to existing frames) and decodes on access. Content checks that need the pixels (corrupt
AVI, label values, image/label sizes, DICOM pixel data) run at access, or for every item at construction when
``validate=True`` (the default with ``on_invalid="skip"``, so a skipping dataset never fails mid-epoch).

Problems are never raised one at a time: with ``on_invalid="raise"`` the reader gathers every problem and raises
one error listing them all (:class:`MissingFilesError` when files are missing, :class:`InvalidItemError`
otherwise); with ``on_invalid="skip"`` the items are dropped, each one logged, and ``dataset.invalid`` keeps the
``(item, reason)`` report.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from monai.data import Dataset
from monai.utils import StrEnum

__all__ = ["OnInvalid", "InvalidItemError", "MissingFilesError", "ReaderDataset"]

logger = logging.getLogger(__name__)


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
