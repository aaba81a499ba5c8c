"""Evaluation report: ``metrics.json`` plus ``report.md`` with Markdown tables and PNG figures.

Every bundle's evaluate stage calls :func:`write_report` with a (possibly nested) metrics dict, e.g.::

    {"distribution": {"FD_view_classifier": 12.3, ...},
     "segmentation": {"real": {"dice_lv_endo": 0.91, ...}, "synthetic": {...}},
     "privacy": {"memorisation_rate": 0.01, "memorised_indices": [4, 17]}}

Top-level scalars form a "Summary" table; a section of scalars becomes a metric/value table; a section whose values are
dicts (one per training mix) becomes one table with a row per mix and a bar chart of its first metric. Files are written
under temporary names and renamed, so a crash never leaves a half-written ``metrics.json``.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from echo_monai.metrics.figures import bar_chart, sample_grid, scatter_plot, write_png

__all__ = ["write_report", "to_json_compatible", "markdown_tables"]


def to_json_compatible(value: Any) -> Any:
    """Plain-Python copy of `value`: tensors/arrays to lists or floats, non-finite floats to ``"nan"``/``"inf"``."""
    if isinstance(value, Mapping):
        return {str(key): to_json_compatible(item) for key, item in value.items()}
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if isinstance(value, np.ndarray):
        return to_json_compatible(value.tolist())
    if isinstance(value, (list, tuple)):
        return [to_json_compatible(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _format(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, list):
        shown = ", ".join(_format(item) for item in value[:20])
        return f"[{shown}{', ...' if len(value) > 20 else ''}] ({len(value)})"
    return str(value)


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    lines += ["| " + " | ".join(_format(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _is_table_of_rows(section: Mapping[str, Any]) -> bool:
    return bool(section) and all(isinstance(item, Mapping) for item in section.values())


def markdown_tables(metrics: Mapping[str, Any]) -> str:
    """Markdown for a (nested) metrics dict: a summary table, then one table per section.

    Args:
        metrics: JSON-compatible metrics (see module docstring for the shapes understood).

    Returns:
        Markdown text.
    """
    parts: list[str] = []
    scalars = [(key, value) for key, value in metrics.items() if not isinstance(value, Mapping)]
    if scalars:
        parts.append("## Summary\n\n" + _table(["metric", "value"], scalars))
    for section, content in metrics.items():
        if not isinstance(content, Mapping):
            continue
        if _is_table_of_rows(content):
            columns: list[str] = []
            for row in content.values():
                columns += [key for key in row if key not in columns and not isinstance(row[key], Mapping)]
            rows = [[name] + [row.get(column, "") for column in columns] for name, row in content.items()]
            parts.append(f"## {section}\n\n" + _table(["", *columns], rows))
        else:
            flat = [(key, value) for key, value in content.items() if not isinstance(value, Mapping)]
            parts.append(f"## {section}\n\n" + _table(["metric", "value"], flat))
            nested = {key: value for key, value in content.items() if isinstance(value, Mapping)}
            if nested:
                parts.append(markdown_tables({f"{section} / {key}": value for key, value in nested.items()}))
    return "\n\n".join(parts)


def _atomic_write_text(path: str, text: str) -> None:
    temporary = f"{path}.tmp-{os.getpid()}"
    with open(temporary, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(temporary, path)


def _default_bars(metrics: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """One chart per section of per-mix rows: the first numeric metric across the rows."""
    bars: dict[str, dict[str, float]] = {}
    for section, content in metrics.items():
        if isinstance(content, Mapping) and _is_table_of_rows(content):
            first_row = next(iter(content.values()))
            numeric = [
                key
                for key, value in first_row.items()
                if isinstance(value, (int, float)) and not isinstance(value, bool)
            ]
            if numeric:
                key = numeric[0]
                bars[f"{section}: {key}"] = {
                    str(name): float(row[key]) if isinstance(row.get(key), (int, float)) else float("nan")
                    for name, row in content.items()
                }
    return bars


def write_report(
    out_dir: str | os.PathLike,
    metrics: Mapping[str, Any],
    real_samples: torch.Tensor | np.ndarray | None = None,
    synthetic_samples: torch.Tensor | np.ndarray | None = None,
    ef_requested: Sequence[float] | np.ndarray | None = None,
    ef_measured: Sequence[float] | np.ndarray | None = None,
    bars: Mapping[str, Mapping[str, float]] | None = None,
    title: str = "Evaluation report",
    bar_range: tuple[float, float] | None = None,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> dict[str, str]:
    """Write ``metrics.json``, ``report.md`` and the PNG figures into `out_dir`.

    Args:
        out_dir: output folder (created if missing).
        metrics: metrics, possibly nested one or two levels (see module docstring).
        real_samples: real images `(N, C, H, W)` or videos `(N, C, T, H, W)` for the sample grid.
        synthetic_samples: synthetic samples, same frame size; the grid is drawn only when both are given.
        ef_requested: EF the generator was asked for, % `(M,)` (with `ef_measured`, draws a scatter plot).
        ef_measured: EF the regressor measures on the generated clips, % `(M,)`.
        bars: chart title -> {label: value}; default: one chart per per-mix section (its first metric).
        bar_range: ``(0, top)`` axis of every bar chart (e.g. ``(0, 1)`` for Dice); None scales each chart.
        title: report title.
        value_range: intensity range of the samples.

    Returns:
        name -> written path, for ``metrics``, ``report`` and each figure.

    Raises:
        ValueError: when only one of a pair (samples, EF values) is given or the pairs do not match.

    Example:
        >>> paths = write_report("eval", {"segmentation": evaluator.run(test, real, synthetic)})
        >>> paths["report"]  # "eval/report.md"
    """
    if (real_samples is None) != (synthetic_samples is None):
        raise ValueError("write_report: pass both real_samples and synthetic_samples, or neither.")
    if (ef_requested is None) != (ef_measured is None):
        raise ValueError("write_report: pass both ef_requested and ef_measured, or neither.")
    out_dir = os.fspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    clean = to_json_compatible(metrics)
    paths: dict[str, str] = {}

    metrics_path = os.path.join(out_dir, "metrics.json")
    _atomic_write_text(metrics_path, json.dumps(clean, indent=2, sort_keys=False, allow_nan=False) + "\n")
    paths["metrics"] = metrics_path

    figures: list[tuple[str, str]] = []  # (caption, file name)
    if real_samples is not None:
        name = "samples_real_vs_synthetic.png"
        paths["samples"] = write_png(
            os.path.join(out_dir, name), sample_grid(real_samples, synthetic_samples, value_range=value_range)
        )
        figures.append(("Real (top) vs synthetic (bottom) samples", name))
    for index, (chart_title, values) in enumerate((bars if bars is not None else _default_bars(clean)).items()):
        if values:
            name = f"bars_{index}.png"
            paths[f"bars_{index}"] = write_png(
                os.path.join(out_dir, name), bar_chart(values, chart_title, value_range=bar_range)
            )
            figures.append((chart_title, name))
    if ef_requested is not None:
        name = "ef_requested_vs_measured.png"
        image = scatter_plot(
            ef_requested, ef_measured, "EF: requested vs measured", "requested EF (%)", "measured EF (%)"
        )
        paths["ef_scatter"] = write_png(os.path.join(out_dir, name), image)
        figures.append(("Ejection fraction requested vs measured", name))

    text = f"# {title}\n\n{markdown_tables(clean)}\n"
    if figures:
        text += (
            "\n## Figures\n\n"
            + "\n\n".join(f"**{caption}**\n\n![{caption}]({name})" for caption, name in figures)
            + "\n"
        )
    report_path = os.path.join(out_dir, "report.md")
    _atomic_write_text(report_path, text)
    paths["report"] = report_path
    return paths
