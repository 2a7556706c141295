"""The report page: escaped summary tables, every figure, plotly.js inlined once, atomic writes.

`html_page` is the scaffolding the sweep report shares. Safety: every string that comes from a
checkpoint or a sweep folder is HTML-escaped; figure data travels as JSON inside a non-executed
`<script type="application/json">` block with `<`, `>` and `&` written as unicode escapes, so no
value can close the block. A Content-Security-Policy pins the page's own scripts by hash and
forbids every network fetch, so even a string that slipped through could neither run nor phone
home.
"""

import base64
import hashlib
import html
import json
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import plotly.offline

from .. import __version__
from .._files import check_destination, write_atomically
from ._figures import PANELS, panel_figure
from ._plot import Panel, accuracies_of, class_names, percent
from ._training import NO_HISTORY

# Each phase's label and what it means by definition (the paper's Table 2), true of any run in
# it; `phase_story` says what it means for one run, with that run's numbers.
PHASES = {
    "generalization": ("Generalization", "test accuracy >= 90% on a training set without "
                       "corrupted labels (xi = 0)"),
    "coexistence": ("Coexistence", "train and test accuracy both >= 90%: the network "
                    "generalizes while fitting its training labels, corrupted ones included"),
    "partial_inversion": ("Partial inversion", "test accuracy >= 90%, train accuracy below 90% "
                          "but above 1.05 - xi: part of the corrupted labels are not fitted"),
    "full_inversion": ("Full inversion", "test accuracy >= 90%, train accuracy below 1.05 - xi: "
                       "the corrupted labels are not fitted"),
    "memorization": ("Memorization", "train accuracy >= 90%, test accuracy below: the training "
                     "set is fitted without generalizing"),
    "forgetting": ("Forgetting", "both below 90% at the end, after test accuracy reached 90% "
                   "earlier in training"),
    "confusion": ("Confusion", "both below 90%, and test accuracy never reached 90%"),
}


def phase_story(analysis: Any) -> str:
    """What the phase means for this run, with its numbers; every clause is measured."""
    phase, acc = str(analysis.phase.phase), analysis.accuracy
    train, test = percent(float(acc.train)), percent(float(acc.test))
    kept = percent(float(acc.corrupted_memorized))
    true = percent(float(acc.corrupted_true))
    corrupted = bool(getattr(analysis, "has_corrupted", True)) and acc.n_corrupted > 0
    if phase == "generalization":
        return (f"it generalizes (test {test}, train {train}); its training set has no "
                "corrupted labels to memorize")
    if phase in ("coexistence", "partial_inversion", "full_inversion") and corrupted:
        return (f"it generalizes (test {test}) and gives {kept} of its {acc.n_corrupted} "
                f"corrupted training examples their corrupted label, {true} their true one "
                f"(train {train})")
    if phase == "memorization":
        extra = f", {kept} of its corrupted labels included" if corrupted else ""
        return f"it fits its training set (train {train}{extra}) without generalizing (test {test})"
    if phase == "forgetting":
        return f"its test accuracy reached 90% during training and ends at {test} (train {train})"
    if phase == "confusion":
        return f"it neither fits its training set (train {train}) nor generalizes (test {test})"
    return f"test {test}, train {train}"


# Plotly reads this before it loads: never look for or fetch MathJax.
_PRELUDE = 'window.PlotlyConfig = {MathJaxConfig: "local"};'
_BOOT = """(function () {
  "use strict";
  var figures = JSON.parse(document.getElementById("mechmem-figures").textContent);
  var config = {responsive: true, displaylogo: false, typesetMath: false};
  Object.keys(figures).forEach(function (key) {
    var el = document.getElementById(key);
    function fail(err) {
      el.textContent = "This figure could not be drawn: " + err;
      console.error("mechmem report: figure " + key + " failed: " + err);
    }
    try {
      Plotly.newPlot(el, figures[key].data, figures[key].layout, config).catch(fail);
    } catch (err) {
      fail(err);
    }
  });
})();"""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222;
       margin: 0; background: #fafafa; line-height: 1.45; }
main { max-width: 1180px; margin: 0 auto; padding: 1.2rem 1.5rem 3rem; }
h1 { font-size: 1.6rem; margin: 0.2rem 0; }
h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; margin: 1.4rem 0 0.3rem; }
.run-name { font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 1.05rem;
            background: #eef; padding: 0.1rem 0.4rem; border-radius: 4px; word-break: break-all; }
.lead { font-size: 1.1rem; } .phase { font-weight: 600; }
nav { font-size: 0.92rem; margin: 0.6rem 0; } nav a { margin-right: 1rem; }
.cards { display: flex; flex-wrap: wrap; gap: 1.2rem; }
table { border-collapse: collapse; font-size: 0.92rem; background: #fff; }
td, th { border: 1px solid #e2e2e2; padding: 0.25rem 0.6rem; text-align: left;
         vertical-align: top; }
th { background: #f2f2f2; } td.num { text-align: right; font-variant-numeric: tabular-nums; }
.settings { display: grid; grid-template-columns: repeat(auto-fill, minmax(16rem, 1fr));
             column-gap: 1.2rem; background: #fff; border: 1px solid #e2e2e2;
             padding: 0.3rem 0.6rem; font-size: 0.9rem; }
.settings div { display: flex; justify-content: space-between; gap: 0.6rem;
                border-bottom: 1px solid #f0f0f0; padding: 0.15rem 0; }
.settings .k { font-weight: 600; }
.settings .v { font-family: ui-monospace, Menlo, Consolas, monospace; word-break: break-all;
               text-align: right; }
figure { margin: 0.4rem 0 1.2rem; background: #fff; border: 1px solid #e6e6e6;
         border-radius: 6px; padding: 0.4rem; }
figcaption { font-size: 0.9rem; color: #444; padding: 0.3rem 0.5rem; }
.missing { font-style: italic; color: #666; background: #fff; border: 1px dashed #ccc;
           padding: 0.8rem; border-radius: 6px; }
footer { font-size: 0.85rem; color: #777; margin-top: 2rem; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px;
          vertical-align: -0.1em; margin-right: 0.4em; border: 1px solid rgba(0, 0, 0, 0.2); }
summary { cursor: pointer; font-weight: 600; margin: 0.6rem 0 0.3rem; }
"""


def escape(value: Any) -> str:
    """`str(value)` safe to place in HTML text or a quoted attribute."""
    return html.escape(str(value), quote=True)


def script_json(obj: Any) -> str:
    """JSON that can sit inside a `<script>` element: no `<`, `>` or `&` appears literally, so
    no string in it can close the element or open a comment."""
    text = json.dumps(obj, separators=(",", ":"), allow_nan=False, ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _csp_hash(script: str) -> str:
    digest = hashlib.sha256(script.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def format_value(value: Any) -> str:
    """A setting's value as text: floats in full, containers as JSON."""
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Mapping | list | tuple):
        return json.dumps(value, default=str, ensure_ascii=False)
    return str(value)


def _table(rows: list[tuple[str, str]], header: tuple[str, str] | None = None) -> str:
    head = (f"<tr><th>{escape(header[0])}</th><th>{escape(header[1])}</th></tr>"
            if header else "")
    body = "".join(f'<tr><th>{escape(k)}</th><td class="num">{escape(v)}</td></tr>'
                   for k, v in rows)
    return f"<table>{head}{body}</table>"


def _final_step(analysis: Any) -> str:
    steps = analysis.history.get("step") if analysis.history else None
    return f"{float(steps[-1]):g}" if steps else "unknown (no training history)"


def summary_html(analysis: Any) -> str:
    """The run summary: name, phase, the five accuracies, neuron counts and every setting."""
    phase = str(analysis.phase.phase)
    label = PHASES.get(phase, (phase, ""))[0]
    meaning = phase_story(analysis)
    acc = analysis.accuracy
    accuracies = [(lbl, percent(float(getattr(acc, key))))
                  for key, lbl, _ in accuracies_of(analysis)]
    classes, ipr = analysis.neurons, analysis.ipr
    high, low = class_names(analysis)
    evidence = getattr(analysis, "evidence", None)
    threshold = float(classes.threshold)
    neurons = [
        ("width (hidden neurons)" if ipr.site == "hidden" else f"neurons at {ipr.site}",
         str(int(ipr.combined.numel()))),
        (f"{high} (IPR at or above the threshold)", str(classes.generalizing)),
        (f"{low} (IPR below it)", str(classes.memorizing)),
        ("dead (zero or non-finite weights)", str(classes.dead)),
        ("IPR threshold", f"{threshold:.3g} ({classes.method})" if math.isfinite(threshold)
         else f"n/a ({classes.method})"),
        (f"mean IPR ({ipr.convention}, r = {ipr.r:g})",
         f"{ipr.mean:.3f}" if math.isfinite(ipr.mean) else "n/a"),
        ("steps trained", _final_step(analysis)),
    ]
    settings = [(str(k), format_value(v)) for k, v in dict(analysis.config).items()]
    name = str(analysis.name)
    name_html = (f'<span class="run-name">{escape(name)}</span>' if name
                 else '<span class="run-name">unnamed run</span>')
    story = f": {escape(meaning)}" if meaning else ""
    names = ("" if evidence is None else
             f'<p class="class-names">Neuron classes named from '
             f'{"pruning" if evidence.basis == "causal" else "their IPR only"}: '
             f"{escape(evidence.reason)}</p>")
    return (
        f"<h1>mechmem report</h1><p>Run {name_html}</p>"
        f'<p class="lead">Phase <span class="phase">{escape(label)}</span>{story}. '
        f"<span class=\"reason\">{escape(analysis.phase.reason)}</span></p>"
        + '<div class="cards">'
        f"<div><h3>Accuracies</h3>{_table(accuracies, ('measured on', 'accuracy'))}</div>"
        f"<div><h3>Neurons</h3>{_table(neurons)}{names}</div>"
        "</div><h3>Settings</h3>"
        '<div class="settings">'
        + "".join(f'<div><span class="k">{escape(k)}</span><span class="v">{escape(v)}</span>'
                  "</div>" for k, v in settings)
        + "</div>"
    )


_SECTIONS = (
    ("training", "Training", ("training-accuracy", "training-loss", "training-norms",
                              "training-ipr", "periodic-neurons", "progress")),
    ("neurons", "Neurons: periodic or not", ("ipr-histogram", "spectra", "weights-most",
                                             "weights-least", "frequencies", "site-ipr")),
    ("effects", "What the neurons do", ("pruning", "batchnorm", "logits")),
    ("examples", "Single examples", ("example-margins", "data-map", "memorized-neurons")),
)
# Left out, rather than replaced by their note, when they cannot be drawn: the panel before
# already says why (weights-least), or there is nothing to say (a model with one site, a run
# that did not track its examples, a network that memorized nothing).
_QUIET = frozenset({"weights-least", "site-ipr", "data-map", "memorized-neurons"})


def _sections(analysis: Any) -> list[tuple[str, str, list[Panel]]]:
    """Every section's panels; a panel that cannot be drawn shows its note in its own place
    (the page's headline carries no notes)."""
    out = []
    for key, title, keys in _SECTIONS:
        if key == "training" and not analysis.history.get("step"):
            panels = [Panel("training", "Training curves", "Training curves over steps.",
                            note=NO_HISTORY), PANELS["progress"](analysis)]
        else:
            panels = [p for p in (PANELS[k](analysis) for k in keys)
                      if p.figure is not None or p.key not in _QUIET]
        out.append((key, title, panels))
    return out


def panel_html(panel: Panel) -> str:
    """A figure's heading, plot element and caption, or the note standing in its place."""
    title = f"<h3>{escape(panel.title)}</h3>"
    if panel.figure is None:
        return f'{title}<p class="missing" id="missing-{panel.key}">{escape(panel.note)}</p>'
    return (f'{title}<figure><div class="plot" id="fig-{panel.key}"></div>'
            f"<figcaption>{escape(panel.caption)}</figcaption></figure>")


def render_report(analysis: Any) -> str:
    """The report of `analysis` as one self-contained HTML page.

    Args:
        analysis: the `Analysis` returned by `mechmem.analyze`.

    Returns:
        The page, with plotly.js inlined once and every figure's data embedded; it fetches
        nothing when viewed.

    Example:
        >>> from mechmem import analyze
        >>> page = render_report(analyze("runs/default.pt"))
    """
    sections = _sections(analysis)
    figures = {f"fig-{p.key}": panel_figure(p).to_plotly_json() for _, _, panels in sections
               for p in panels if p.figure is not None}
    nav = " ".join(f'<a href="#{key}">{escape(title)}</a>' for key, title, _ in sections)
    body = "".join(
        f'<section id="{key}"><h2>{escape(title)}</h2>'
        + "".join(panel_html(p) for p in panels) + "</section>"
        for key, title, panels in sections
    )
    title = f"mechmem report: {analysis.name}" if analysis.name else "mechmem report"
    return html_page(title, f'<section id="summary">{summary_html(analysis)}</section>'
                     f"<nav>Sections: {nav}</nav>{body}", figures)


def html_page(title: str, content: str, figures: Mapping[str, Any]) -> str:
    """A self-contained page: `content` (HTML, already escaped) in `<main>`, the `figures`
    (plotly specs as plain dicts, keyed by the id of the `div.plot` that draws each) drawn
    by the inlined plotly.js, under the Content-Security-Policy described above.

    Args:
        title: the page title (plain text; escaped here).
        content: the body of the page, every user string in it already escaped.
        figures: element id -> {"data": [...], "layout": {...}}.

    Returns:
        The page.
    """
    plotly_js = plotly.offline.get_plotlyjs()
    if "</script" in plotly_js.lower():  # would end its element early; never seen in a release
        raise ValueError("This plotly.js bundle contains '</script' and cannot be inlined.")
    scripts = (_PRELUDE, plotly_js, _BOOT)
    csp = ("default-src 'none'; script-src " + " ".join(_csp_hash(s) for s in scripts)
           + "; style-src 'unsafe-inline'; img-src data: blob:; font-src data:;"
           " connect-src 'none'; form-action 'none'; base-uri 'none'")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp)}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title><style>{_CSS}</style>"
        f"<script>{_PRELUDE}</script><script>{plotly_js}</script></head>\n<body><main>"
        "<noscript><p class=\"missing\">The figures need JavaScript.</p></noscript>"
        f"{content}<footer>Written by mechmem {escape(__version__)}; this page is "
        "self-contained and loads nothing from the network.</footer></main>\n"
        f'<script type="application/json" id="mechmem-figures">{script_json(figures)}</script>\n'
        f"<script>{_BOOT}</script></body></html>\n"
    )


def write_report(analysis: Any, path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Write the report of `analysis` to `path` atomically (temporary file, then rename).

    Args:
        analysis: the `Analysis` returned by `mechmem.analyze`.
        path: the destination `.html` file; its folder must exist.
        overwrite: replace an existing file; without it an existing file is an error.

    Returns:
        The path written.

    Raises:
        FileExistsError: `path` exists and `overwrite` is False.

    Example:
        >>> from mechmem import analyze
        >>> write_report(analyze("runs/default.pt"), "runs/default.html")
    """
    path = check_destination(path, overwrite=overwrite, what="report")
    page = render_report(analysis)  # before any file exists: a failure leaves nothing behind
    return write_atomically(path, lambda f: f.write(page.encode("utf-8")))
