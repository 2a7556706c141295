"""The sweep report: phase diagrams and accuracy and IPR heatmaps of a sweep folder, one page.

Every figure has one panel per value of the sweep's panel axis (`SweepConfig.panel_axis`, the
regularizer), alpha (train_frac) along x and xi (corrupt_frac) along y, as in the paper's Fig. 3.
A cell not trained yet is left blank. The page reuses the single-run report's scaffolding
(`html_page`: inlined plotly.js, Content-Security-Policy, escaping).
"""

import html
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

import plotly.graph_objects as go

from .._files import check_destination, write_atomically
from ..analysis.phase import PHASES
from ..sweep.result import Grid, SweepResult
from ._page import PHASES as PHASE_TEXT
from ._page import escape, format_value, html_page, panel_html
from ._plot import (
    Panel,
    axis_name,
    axis_ref,
    base_layout,
    numbers,
    panel_titles,
    percent,
    side_by_side,
)

# One colour per phase, whatever phases a sweep holds, so that diagrams compare at a glance:
# greens and blues where the network generalizes, warm colours where it does not. A cell
# without corrupted labels (the xi = 0 row) that generalizes is "generalization", a light
# green of its own beside coexistence's: nothing there is memorized alongside.
PHASE_COLOURS: MappingProxyType[str, str] = MappingProxyType({
    "generalization": "#a1d99b",
    "coexistence": "#2ca25f",
    "partial_inversion": "#6baed6",
    "full_inversion": "#08519c",
    "memorization": "#e6550d",
    "forgetting": "#9e6ebd",
    "confusion": "#969696",
})
assert tuple(PHASE_COLOURS) == PHASES  # a new phase needs its colour here
# Metrics `accuracy_heatmap_figure` draws: fractions in [0, 1].
ACCURACY_METRICS = ("train", "test", "clean_train", "corrupted_memorized", "corrupted_true",
                    "test_acc_peak")
_ACCURACY_TEXT = {"train": "train accuracy", "test": "test accuracy",
                  "clean_train": "clean train accuracy",
                  "corrupted_memorized": "memorized corrupted labels",
                  "corrupted_true": "corrupted examples given their true label",
                  "test_acc_peak": "peak test accuracy"}
_X, _Y = "train_frac", "corrupt_frac"
_AXIS_TEXT = {_X: "alpha (train fraction)", _Y: "xi (corrupted fraction)"}


def _fixed(result: SweepResult) -> dict[str, Any]:
    """Axes beyond x, y and panels that vary: each shown at its first value."""
    panel = result.config.panel_axis()
    return {f: values[0] for f, values in result.config.axes
            if f not in (_X, _Y, panel) and len(values) > 1}


def _grid(result: SweepResult, metric: str) -> Grid:
    return result.grid(metric, x=_X, y=_Y, panel="auto", **_fixed(result))


def _phase_label(phase: Any) -> str:
    """A phase's name in the sweep's legend, hover and table: generalization says it is the
    phase of cells without corrupted labels (the xi = 0 row)."""
    label = PHASE_TEXT.get(phase, (str(phase), ""))[0]
    return label + " (xi = 0)" if phase == "generalization" else label


def _hover(result: SweepResult, grid: Grid, what: Sequence[str]) -> list:
    """Per panel, per row, per column: the cell's settings, then `what` it shows (any of
    "phase", "accuracies", "ipr", or a metric of `ACCURACY_METRICS`), as escaped text."""
    cells = {c["id"]: c for c in result.cells}
    fixed = _fixed(result)
    out = []
    for k, pv in enumerate(grid.panel_values):
        rows = []
        for j, yv in enumerate(grid.y_values):
            row = []
            for i, xv in enumerate(grid.x_values):
                lines = [] if grid.panel is None else [f"{grid.panel} {format_value(pv)}"]
                lines += [f"alpha {format_value(xv)}", f"xi {format_value(yv)}"]
                lines += [f"{f} {format_value(v)}" for f, v in fixed.items()]
                cell = cells.get(grid.ids[k, j, i])
                if cell is None:
                    lines.append("not finished")
                else:
                    acc = cell["accuracy"]
                    for w in what:
                        if w == "phase":
                            lines.append(f"phase {_phase_label(cell['phase'])}")
                        elif w == "accuracies":
                            lines.append(f"train {_percent(acc['train'])}, "
                                         f"test {_percent(acc['test'])}")
                        elif w == "ipr":
                            mean = cell["ipr"]["mean"]
                            lines.append("mean IPR " + ("n/a" if mean is None else f"{mean:.3f}"))
                        else:
                            value = cell["test_acc_peak"] if w == "test_acc_peak" else acc[w]
                            lines.append(f"{_ACCURACY_TEXT[w]} {_percent(value)}")
                row.append("<br>".join(html.escape(s, quote=False) for s in lines))
            rows.append(row)
        out.append(rows)
    return out


def _percent(x: float | None) -> str:
    return "n/a" if x is None else percent(float(x))


def _ticks(values: Sequence[Any], most: int = 9) -> dict[str, Any]:
    """Ticks at the grid's own values (at most `most` of them), not plotly's round numbers,
    which fall between cells, and a range that spans the cells, so that a grid with no or
    few finished cells draws the same axes as a finished one (plotly sizes an axis from its
    data and overprints ticks when there is none)."""
    shown = list(values)[::max(1, -(-len(values) // most))]
    out: dict[str, Any] = {"tickmode": "array", "tickvals": numbers(shown),
                           "ticktext": [f"{v:g}" if isinstance(v, float) else str(v)
                                        for v in shown]}
    try:
        grid = sorted(float(v) for v in values)
    except (TypeError, ValueError):
        return out
    half = min((b - a for a, b in zip(grid, grid[1:], strict=False) if b > a),
               default=max(abs(grid[0]), 1.0) if grid else 1.0) / 2
    if grid:
        out["range"] = [grid[0] - half, grid[-1] + half]
    return out


def _panels(grid: Grid, z: list, text: list, trace: Mapping[str, Any],
            layout: Mapping[str, Any]) -> dict[str, Any]:
    """A heatmap per panel side by side, each over alpha (x) and xi (y), sharing the y axis."""
    n = len(grid.panel_values)
    domains = side_by_side(n, gap=0.035)
    titles = ["" if grid.panel is None else f"{grid.panel} = {format_value(v)}"
              for v in grid.panel_values]
    data, axes = [], {}
    for k in range(n):
        data.append({
            "type": "heatmap", "name": html.escape(titles[k], quote=False),
            "x": numbers(grid.x_values), "y": numbers(grid.y_values), "z": z[k],
            "text": text[k], "hovertemplate": "%{text}<extra></extra>", "hoverongaps": True,
            "xgap": 1, "ygap": 1, "xaxis": axis_ref("x", k), "yaxis": axis_ref("y", k),
            **trace,
        })
        axes[axis_name("x", k)] = {"domain": domains[k], "anchor": axis_ref("y", k),
                                   "title": {"text": _AXIS_TEXT[_X]}, "showgrid": False,
                                   "zeroline": False, **_ticks(grid.x_values)}
        y: dict[str, Any] = {"anchor": axis_ref("x", k), "showgrid": False, "zeroline": False,
                             **_ticks(grid.y_values)}
        if k == 0:
            y["title"] = {"text": _AXIS_TEXT[_Y]}
        else:
            y.update(matches="y", showticklabels=False)
        axes[axis_name("y", k)] = y
    annotations = ([] if grid.panel is None else
                   panel_titles([html.escape(t, quote=False) for t in titles], domains))
    return {"data": data,
            "layout": {**base_layout(height=420, annotations=annotations, **axes), **layout}}


# Heatmaps with a colour bar have no legend: no room kept for one under the plot.
_NO_LEGEND = {"height": 370, "margin": {"l": 60, "r": 20, "t": 30, "b": 50}}


def phase_diagram_figure(result: SweepResult) -> go.Figure:
    """The phase of every cell in fixed colours (`PHASE_COLOURS`), one panel per
    value of the panel axis, like the paper's Fig. 3; the legend names every phase (the paper's
    six, and generalization, which only a cell without corrupted labels can be in).

    Args:
        result: a sweep, finished or not (`mechmem.sweep.load_sweep`).

    Returns:
        The figure: one heatmap per panel (z = the phase's index in `PHASES`, None where a
        cell is not finished), then one legend entry per phase.

    Example:
        >>> phase_diagram_figure(load_sweep("sweeps/fig3a")).show()
    """
    grid = _grid(result, "phase")
    z = [[[PHASES.index(v) if v in PHASES else None for v in row] for row in panel]
         for panel in grid.values.tolist()]
    n = len(PHASES)
    # Stepwise colour scale: index k, at (k + 0.5) / n of the range, falls inside its own step.
    scale = [[round(s / n, 6), PHASE_COLOURS[p]] for k, p in enumerate(PHASES)
             for s in (k, k + 1)]
    trace = {"zmin": -0.5, "zmax": n - 0.5, "colorscale": scale, "showscale": False}
    spec = _panels(grid, z, _hover(result, grid, ("phase", "accuracies", "ipr")), trace, {})
    # Dataless markers give every phase a legend entry, present in the sweep or not.
    spec["data"] += [
        {"type": "scatter", "x": [None], "y": [None], "mode": "markers",
         "name": _phase_label(p),
         "marker": {"symbol": "square", "size": 13, "color": PHASE_COLOURS[p]},
         "hoverinfo": "skip", "showlegend": True, "xaxis": "x", "yaxis": "y"}
        for p in PHASES
    ]
    return go.Figure(spec)


def accuracy_heatmap_figure(result: SweepResult, metric: str) -> go.Figure:
    """One accuracy of every cell on a fixed 0..1 colour scale, panels as in the phase diagram
    (the paper's Figs. 24 and 25 for "train" and "test").

    Args:
        result: a sweep, finished or not.
        metric: one of `ACCURACY_METRICS` ("train", "test", "clean_train",
            "corrupted_memorized", "corrupted_true", "test_acc_peak").

    Returns:
        The figure: one heatmap per panel (None where a cell is not finished or the metric is
        undefined, e.g. corrupted accuracies at xi = 0).
    """
    if metric not in ACCURACY_METRICS:
        raise ValueError(f"Unknown accuracy {metric!r}; choose one of "
                         f"{', '.join(ACCURACY_METRICS)}.")
    grid = _grid(result, metric)
    z = [numbers(panel) for panel in grid.values]
    colours = {"colorscale": "Viridis", "cmin": 0.0, "cmax": 1.0,
               "colorbar": {"title": {"text": _ACCURACY_TEXT[metric]}, "tickformat": ".0%"}}
    return go.Figure(_panels(grid, z, _hover(result, grid, (metric, "phase")),
                             {"coloraxis": "coloraxis"}, {"coloraxis": colours, **_NO_LEGEND}))


def ipr_heatmap_figure(result: SweepResult) -> go.Figure:
    """The mean IPR of every cell's neurons (high: periodic, generalizing neurons), panels as
    in the phase diagram; the colour scale spans the values of this sweep.

    Args:
        result: a sweep, finished or not.

    Returns:
        The figure: one heatmap per panel (None where a cell is not finished).
    """
    grid = _grid(result, "ipr")
    z = [numbers(panel) for panel in grid.values]
    colours = {"colorscale": "Plasma", "colorbar": {"title": {"text": "mean IPR"}}}
    return go.Figure(_panels(grid, z, _hover(result, grid, ("ipr", "phase")),
                             {"coloraxis": "coloraxis"}, {"coloraxis": colours, **_NO_LEGEND}))


def sweep_figures(result: SweepResult) -> dict[str, go.Figure]:
    """Every figure of the sweep report, by its key on the page.

    Returns:
        {"phase-diagram", "accuracy-train", "accuracy-test", "ipr"} -> figure.
    """
    return {
        "phase-diagram": phase_diagram_figure(result),
        "accuracy-train": accuracy_heatmap_figure(result, "train"),
        "accuracy-test": accuracy_heatmap_figure(result, "test"),
        "ipr": ipr_heatmap_figure(result),
    }


_SECTIONS = (
    ("phases", "Phase diagram", (
        ("phase-diagram", "Phase of every cell",
         "Each square is one run, coloured by its phase at the last step (the paper's Table 2: "
         "90% train and test accuracy lines); blank squares are not finished."),
    )),
    ("accuracy", "Accuracies", (
        ("accuracy-train", "Train accuracy (on the labels trained on, corrupted ones included)",
         "1 means every training label is fitted, corrupted ones too; it falls towards 1 - xi "
         "as the network unlearns the corrupted labels (inversion)."),
        ("accuracy-test", "Test accuracy",
         "Bright where the network generalizes to the unseen pairs; dark where it only "
         "memorized or is confused."),
    )),
    ("ipr", "Mean IPR", (
        ("ipr", "Mean inverse participation ratio of the neurons",
         "High where neurons are periodic (one Fourier frequency each, the generalizing "
         "solution); low where they are spread over many frequencies (non-periodic)."),
    )),
)


def _table(header: Sequence[str] | None, rows: Sequence[Sequence[str]], *,
           raw_first: bool = False, cls: str = "") -> str:
    """Rows of text cells, escaped (the first column left as is when `raw_first`)."""
    head = "" if header is None else (
        "<tr>" + "".join(f"<th>{escape(h)}</th>" for h in header) + "</tr>")
    body = "".join(
        "<tr>" + "".join(f"<td>{c if raw_first and n == 0 else escape(c)}</td>"
                         for n, c in enumerate(row)) + "</tr>"
        for row in rows)
    attr = f' class="{cls}"' if cls else ""
    return f"<table{attr}>{head}{body}</table>"


def _header_html(result: SweepResult) -> str:
    config, base = result.config, result.config.base
    done, total = len(result.cells), result.n_cells
    swept = set(config.axis_names)
    rule = (" (base; scaled per batch size by the paper's minibatch rule)"
            if config.paper_minibatch_rule else "")
    runs = [(f, "swept" if f in swept else format_value(getattr(base, f))
             + (rule if f == "steps" else "")) for f in ("steps", "p", "width", "op")]
    runs.append(("mechmem version", str(result.header.get("mechmem_version", "n/a"))))
    panel, fixed = config.panel_axis(), _fixed(result)
    roles = {_X: "columns (x)", _Y: "rows (y)"}
    if panel is not None:
        roles[panel] = "one panel each"
    axes = [(f, ", ".join(format_value(v) for v in values),
             roles.get(f, f"fixed at {format_value(fixed[f])} (first value)" if f in fixed
                       else "one value"))
            for f, values in config.axes]
    counts = result.phase_counts()
    phases = [(f'<span class="swatch" style="background:{PHASE_COLOURS[p]}"></span>'
               f"{escape(_phase_label(p))}", str(counts.pop(p, 0)), PHASE_TEXT[p][1])
              for p in PHASES]
    phases += [(escape(p), str(n), "not a phase this mechmem knows") for p, n in counts.items()]
    if done < total:
        phases.append(('<span class="swatch" style="background:#fff"></span>not finished',
                       str(total - done), "blank in the figures"))
    settings = "".join(f'<div><span class="k">{escape(k)}</span>'
                       f'<span class="v">{escape(format_value(v))}</span></div>'
                       for k, v in base.to_dict().items())
    name = (f'<span class="run-name">{escape(config.name)}</span>' if config.name
            else '<span class="run-name">unnamed sweep</span>')
    state = "finished" if done == total else "not finished"
    return (
        f"<h1>mechmem sweep report</h1><p>Sweep {name}</p>"
        f'<p class="lead">{done} of {total} cells done ({state}).</p>'
        '<div class="cards">'
        f"<div><h3>Runs</h3>{_table(None, runs)}</div>"
        f"<div><h3>Grid axes</h3>{_table(('axis', 'values', 'drawn as'), axes)}</div>"
        f"<div><h3>Phases</h3>"
        f"{_table(('phase', 'cells', 'meaning'), phases, raw_first=True, cls='phases')}</div>"
        "</div>"
        f'<details><summary>Base settings of every cell</summary><div class="settings">'
        f"{settings}</div></details>"
    )


def _notes_html(result: SweepResult) -> str:
    notes = []
    missing = result.n_cells - len(result.cells)
    if missing:
        notes.append(f'<p class="missing" id="missing-cells">{missing} of {result.n_cells} '
                     "cells are not finished yet: they are blank in every figure. Finish the "
                     "sweep with <code>mechmem sweep --resume DIR</code>.</p>")
    fixed = _fixed(result)
    if fixed:
        shown = ", ".join(f"{f} = {format_value(v)}" for f, v in fixed.items())
        notes.append(f'<p id="fixed-axes">The sweep also varies {escape(", ".join(fixed))}; '
                     f"the figures show {escape(shown)} (the first value of each).</p>")
    return "".join(notes)


def render_sweep_report(result: SweepResult) -> str:
    """The report of a sweep as one self-contained HTML page: a header (name, cells done, run
    size, grid axes, phase counts), the phase diagram, train and test accuracy and mean IPR.

    Args:
        result: a sweep, finished or not (`mechmem.sweep.load_sweep`).

    Returns:
        The page, with plotly.js inlined once; it fetches nothing when viewed.

    Example:
        >>> from mechmem.sweep import load_sweep
        >>> page = render_sweep_report(load_sweep("sweeps/fig3a"))
    """
    specs = {f"fig-{k}": fig.to_plotly_json() for k, fig in sweep_figures(result).items()}
    nav = " ".join(f'<a href="#{key}">{escape(title)}</a>' for key, title, _ in _SECTIONS)
    body = "".join(
        f'<section id="{key}"><h2>{escape(title)}</h2>'
        + "".join(panel_html(Panel(k, t, caption, figure=specs[f"fig-{k}"]))
                  for k, t, caption in panels) + "</section>"
        for key, title, panels in _SECTIONS)
    name = result.config.name
    title = f"mechmem sweep report: {name}" if name else "mechmem sweep report"
    return html_page(title, f'<section id="summary">{_header_html(result)}</section>'
                     f"<nav>Sections: {nav}</nav>{_notes_html(result)}{body}", specs)


def write_sweep_report(result: SweepResult, path: str | os.PathLike, *,
                       overwrite: bool = False) -> Path:
    """Write the report of a sweep to `path` atomically (temporary file, then rename).

    Args:
        result: a sweep, finished or not.
        path: the destination `.html` file; its folder must exist.
        overwrite: replace an existing file; without it an existing file is an error.

    Returns:
        The path written.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.

    Example:
        >>> write_sweep_report(load_sweep("sweeps/fig3a"), "sweeps/fig3a/report.html")
    """
    path = check_destination(path, overwrite=overwrite, what="report")
    page = render_sweep_report(result)  # before any file exists: a failure leaves nothing
    return write_atomically(path, lambda f: f.write(page.encode("utf-8")))

