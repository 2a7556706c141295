"""The shared pieces of the report's figures: panels, numbers, colours, layouts.

Panel builders write each figure as a plain `{"data": [...], "layout": {...}}` spec, which
`_figures.panel_figure` turns into a validated `plotly.graph_objects.Figure` (a misspelt
property fails there), for Python and for the page alike.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

# One colour and one label per accuracy, the same in every figure of the report.
ACCURACIES: tuple[tuple[str, str, str], ...] = (
    ("train", "train (labels trained on)", "#1f77b4"),
    ("test", "test", "#d62728"),
    ("clean_train", "clean train", "#2ca02c"),
    ("corrupted_memorized", "corrupted vs corrupted label (memorization)", "#9467bd"),
    ("corrupted_true", "corrupted vs true label (inversion)", "#ff7f0e"),
)
CLASS_COLORS = {"generalizing": "#1b9e77", "memorizing": "#d95f02", "dead": "#7f7f7f"}
PART_COLORS = {"U": "#4c72b0", "V": "#55a868", "W": "#c44e52"}


def accuracies_of(analysis: Any) -> tuple[tuple[str, str, str], ...]:
    """The `ACCURACIES` that exist for a run: train and test only when its training set has
    no corrupted examples (the other three would be empty or repeat train)."""
    if analysis.accuracy.n_corrupted > 0:
        return ACCURACIES
    return tuple(a for a in ACCURACIES if a[0] in ("train", "test"))


def class_names(analysis: Any) -> tuple[str, str]:
    """(high-IPR, low-IPR) class names of an analysis: "generalizing" and "memorizing" only on
    causal evidence (`Analysis.class_names`), "periodic" and "non-periodic" otherwise."""
    names = getattr(analysis, "class_names", None)
    return (str(names[0]), str(names[1])) if names is not None else ("periodic", "non-periodic")


@dataclass(frozen=True)
class Panel:
    """One figure of the report, or the sentence that stands in its place.

    Attributes:
        key: the figure's element id on the page (letters, digits and dashes).
        title: a short heading above it.
        caption: one sentence saying how to read it.
        figure: the plotly figure as a plain dict, or None when there is nothing to draw.
        note: why there is no figure (shown in its place) when `figure` is None.
    """

    key: str
    title: str
    caption: str
    figure: dict[str, Any] | None = None
    note: str = ""

    def __post_init__(self) -> None:
        if not self.key.replace("-", "").isalnum():
            raise ValueError(f"Panel key must be letters, digits and dashes, got {self.key!r}.")
        if (self.figure is None) == (not self.note):
            raise ValueError(f"Panel {self.key!r} needs exactly one of a figure or a note.")


def numbers(values: Any, digits: int = 4) -> list:
    """A tensor, array or sequence as a (nested) list of floats rounded to `digits` significant
    digits, with NaN and infinities as None (JSON has no NaN; plotly leaves a gap there).

    Rounding keeps the page small: 4 digits are far below what a plot can show.
    """
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().to(torch.float64).numpy()
    a = np.asarray(values, dtype=np.float64)
    finite = np.isfinite(a)
    safe = np.where(finite & (a != 0), np.abs(a), 1.0)
    shift = digits - 1 - np.floor(np.log10(safe))  # decimal places to keep, per value
    # Divide by an exact power of ten (or multiply by one) so that each result is the double
    # nearest to its decimal: its repr, hence the JSON, stays short.
    up = np.power(10.0, np.clip(shift, 0, 300))
    down = np.power(10.0, np.clip(-shift, 0, 300))
    with np.errstate(invalid="ignore", over="ignore"):
        rounded = np.where(shift >= 0, np.round(a * up) / up, np.round(a / down) * down)
    rounded = np.where(finite, rounded, np.nan)
    return _none_for_nan(rounded.tolist())


def _none_for_nan(x: Any) -> Any:
    if isinstance(x, list):
        return [_none_for_nan(v) for v in x]
    return None if isinstance(x, float) and not math.isfinite(x) else x


def base_layout(height: int = 380, **extra: Any) -> dict[str, Any]:
    """The layout every figure starts from: white template, tight margins, legend below."""
    top, bottom = 30, 100
    layout: dict[str, Any] = {
        "template": "plotly_white",
        "height": height,
        "margin": {"l": 60, "r": 20, "t": top, "b": bottom},
        "font": {"family": "system-ui, -apple-system, Segoe UI, Roboto, sans-serif", "size": 12},
        # Legend 62 px under the plot area, clear of the x-axis title (paper units scale with
        # the plot area's height).
        "legend": {"orientation": "h", "yanchor": "top", "y": -62 / (height - top - bottom),
                   "x": 0},
        "hovermode": "closest",
    }
    layout.update(extra)
    return layout


def side_by_side(n: int, gap: float = 0.06) -> list[list[float]]:
    """x-axis domains for `n` panels in a row."""
    width = (1 - gap * (n - 1)) / n
    return [[i * (width + gap), i * (width + gap) + width] for i in range(n)]


def axis_name(letter: str, i: int) -> str:
    """Layout key of the i-th (0-based) x or y axis: xaxis, xaxis2, ..."""
    return f"{letter}axis" if i == 0 else f"{letter}axis{i + 1}"


def axis_ref(letter: str, i: int) -> str:
    """Trace reference of the i-th (0-based) axis: x, x2, ..."""
    return letter if i == 0 else f"{letter}{i + 1}"


def panel_titles(titles: Sequence[str], domains: Sequence[Sequence[float]]) -> list[dict]:
    """Annotations that title each side-by-side panel."""
    return [
        {"text": t, "x": (d[0] + d[1]) / 2, "y": 1.0, "xref": "paper", "yref": "paper",
         "xanchor": "center", "yanchor": "bottom", "showarrow": False, "font": {"size": 13}}
        for t, d in zip(titles, domains, strict=True)
    ]


def vline(x: float, label: str, color: str = "#444", row: int = 0) -> tuple[dict, dict]:
    """A dashed vertical line across the plot at `x` and its label above the plot, on label
    row `row` (rows stack upwards, 14 px apart, so that labels of nearby lines never overlap)."""
    shape = {"type": "line", "x0": x, "x1": x, "y0": 0, "y1": 1, "xref": "x", "yref": "paper",
             "line": {"color": color, "width": 1.5, "dash": "dash"}}
    note = {"text": label, "x": x, "y": 1.0, "xref": "x", "yref": "paper", "showarrow": False,
            "xanchor": "left", "yanchor": "bottom", "yshift": 14 * row,
            "font": {"size": 11, "color": color}}
    return shape, note


def percent(x: float) -> str:
    """A fraction as a percentage with one decimal, or "n/a" for NaN."""
    return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}%"
