"""Report figures about what the neurons do: the three pruning curves and the logits of the
corrupted training examples at their corrupted and their true labels."""

from typing import Any

import torch

from ._plot import (
    Panel,
    accuracies_of,
    axis_name,
    axis_ref,
    base_layout,
    numbers,
    panel_titles,
    percent,
    side_by_side,
)

PRUNING_ORDERS = (
    ("ipr_ascending", "lowest IPR first"),
    ("ipr_descending", "highest IPR first"),
    ("random", "random order"),
)


def pruning_panel(analysis: Any) -> Panel:
    """Accuracies as neurons are removed in each of the three orders, one panel per order."""
    curves = analysis.pruning.curves
    domains = side_by_side(3, gap=0.05)
    traces = []
    layout = base_layout(400)
    for i, ((order, title), domain) in enumerate(zip(PRUNING_ORDERS, domains, strict=True)):
        curve = curves[order]
        x = numbers(curve.fraction)
        for key, label, color in accuracies_of(analysis):
            traces.append({
                "type": "scatter", "mode": "lines", "name": label, "legendgroup": key,
                "showlegend": i == 0, "x": x, "y": numbers(getattr(curve, key)),
                "line": {"color": color, "width": 2},
                "xaxis": axis_ref("x", i), "yaxis": axis_ref("y", i),
                "hovertemplate": f"{title}: %{{x:.1%}} removed<br>{label}: %{{y:.1%}}"
                                 "<extra></extra>",
            })
        layout[axis_name("x", i)] = {"domain": domain, "anchor": axis_ref("y", i),
                                     "range": [0, 1], "tickformat": ".0%",
                                     "title": {"text": "neurons removed"}}
        layout[axis_name("y", i)] = {"anchor": axis_ref("x", i), "range": [-0.02, 1.05],
                                     "tickformat": ".0%",
                                     **({"title": {"text": "accuracy"}} if i == 0 else {})}
    layout["annotations"] = panel_titles([t for _, t in PRUNING_ORDERS], domains)
    caption = _pruning_caption(analysis)
    return Panel("pruning", "Pruning curves", caption, {"data": traces, "layout": layout})


def _pruning_caption(analysis: Any) -> str:
    """How to read the pruning curves, with this run's numbers: what removing each end of the
    IPR ranking does, stated from the curves, never assumed."""
    curves = analysis.pruning.curves
    asc60, desc30 = curves["ipr_ascending"].at(0.6), curves["ipr_descending"].at(0.3)
    head = ("Accuracies as hidden neurons are zeroed one at a time without retraining, in three "
            "orders (lowest IPR first, highest IPR first, and a random order as the control). ")
    if analysis.accuracy.n_corrupted == 0:
        return head + (f"This run has no corrupted labels: at 60% removed lowest-IPR first, train "
                       f"{percent(asc60['train'])} and test {percent(asc60['test'])}; at 30% "
                       f"removed highest-IPR first, test {percent(desc30['test'])}.")
    return head + (f"At 60% removed lowest-IPR first: memorized labels "
                   f"{percent(asc60['corrupted_memorized'])}, test {percent(asc60['test'])} "
                   f"(the paper's coexistence network: memorization falls to ~2% while test holds "
                   f"~99%); at 30% removed highest-IPR first: test {percent(desc30['test'])}.")


def logits_panel(analysis: Any) -> Panel:
    """Histograms and scatter of corrupted examples' logits at corrupted vs true labels."""
    logits = analysis.logits
    corrupted = logits.corrupted_label_logit.detach()
    true = logits.true_label_logit.detach()
    title = "Logits of the corrupted examples"
    if corrupted.numel() == 0:
        return Panel("logits", title, "Logits of corrupted examples.",
                     note="This run has no corrupted training example whose label differs from "
                          "the true one, so there are no corrupted-example logits to show.")
    domains = side_by_side(2, gap=0.1)
    x_corr, x_true = numbers(corrupted), numbers(true)
    finite = torch.cat([corrupted, true])
    finite = finite[torch.isfinite(finite)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.numel() else (0.0, 1.0)
    # The same 60 bins for both histograms, so that their peaks compare.
    bins = {"start": lo, "end": hi + 1e-9, "size": max(hi - lo, 1e-6) / 60}
    traces = [
        {"type": "histogram", "name": "logit at the corrupted label", "x": x_corr,
         "marker": {"color": "#9467bd"}, "opacity": 0.7, "xbins": bins,
         "xaxis": "x", "yaxis": "y"},
        {"type": "histogram", "name": "logit at the true label", "x": x_true,
         "marker": {"color": "#ff7f0e"}, "opacity": 0.7, "xbins": bins,
         "xaxis": "x", "yaxis": "y"},
        {"type": "scatter", "mode": "markers", "name": "one corrupted example",
         "x": x_true, "y": x_corr, "marker": {"color": "#555", "size": 4, "opacity": 0.5},
         "xaxis": "x2", "yaxis": "y2",
         "hovertemplate": "true label %{x}<br>corrupted label %{y}<extra></extra>"},
    ]
    layout = base_layout(
        380, barmode="overlay",
        xaxis={"domain": domains[0], "anchor": "y", "title": {"text": "logit"}},
        yaxis={"anchor": "x", "title": {"text": "examples"}},
        xaxis2={"domain": domains[1], "anchor": "y2",
                "title": {"text": "logit at the true label"}},
        yaxis2={"anchor": "x2", "title": {"text": "logit at the corrupted label"}},
        shapes=[{"type": "line", "xref": "x2", "yref": "y2", "x0": lo, "y0": lo, "x1": hi,
                 "y1": hi, "line": {"color": "#999", "dash": "dot", "width": 1}}],
        annotations=panel_titles(["distribution", "per example"], domains),
    )
    caption = (f"For each of the {corrupted.numel()} corrupted training examples, the logit at "
               "its corrupted label against the logit at its true label: a peak at each means "
               "the network stores both, and points above the dotted diagonal are examples "
               f"where the memorized label wins ({percent(logits.frac_corrupted_wins)} here).")
    return Panel("logits", title, caption, {"data": traces, "layout": layout})
