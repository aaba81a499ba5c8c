"""Helper shared by the reader tests: edit one row of a CSV index (FileList.csv) in place."""

from __future__ import annotations

import csv
from pathlib import Path


def edit_row(path: Path, index: int, **values: str) -> None:
    """Set columns of the ``index``-th data row of the CSV file ``path`` (line ``index + 2``)."""
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    rows[index].update(values)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
