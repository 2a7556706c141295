"""Report figures about single training examples: margins by status, the data map, and which
neurons hold the memorized examples' margins."""

from typing import Any

import torch

from ._plot import CLASS_COLORS, Panel, base_layout, numbers, percent

STATUS_COLORS = {"memorized": "#9467bd", "inverted": "#ff7f0e", "neither": "#7f7f7f",
                 "fitted": "#2ca02c", "missed": "#d62728"}
# Memorized examples drawn in the examples x neurons heatmap (the largest margins).
HEATMAP_EXAMPLES = 60


def _no_examples(key: str, title: str, caption: str) -> Panel:
    return Panel(key, title, caption, note="This model has no neuron site with output weights, "
                 "so its examples' margins cannot be split over neurons.")


def margin_panel(analysis: Any) -> Panel:
    """Histograms of the trained label's margin, one per example status."""
    title = "Margins by status"
    if analysis.has_corrupted:
        caption = ("Each training example's margin: the logit of the label it was trained on "
                   "minus the best other class's, by status (corrupted: memorized, inverted or "
                   "neither; clean: fitted or missed); right of zero the trained label is "
                   "predicted.")
    else:
        caption = ("Each training example's margin: the logit of its label minus the best "
                   "other class's, fitted or missed (this run has no corrupted labels); right "
                   "of zero its label is predicted.")
    ex = analysis.examples
    if ex is None:
        return _no_examples("example-margins", title, caption)
    if not bool(torch.isfinite(ex.margin).any()):
        return Panel("example-margins", title, caption, note="No example's margin is finite: "
                     "the model's outputs hold NaN or infinities, so there are no margins to "
                     "draw.")
    traces = []
    for status, color in STATUS_COLORS.items():
        rows = [i for i, s in enumerate(ex.status) if s == status]
        if not rows:
            continue
        traces.append({"type": "histogram", "name": f"{status} ({len(rows)})",
                       "x": numbers(ex.margin[rows]), "opacity": 0.65,
                       "marker": {"color": color}, "nbinsx": 60})
    layout = base_layout(360, barmode="overlay",
                         xaxis={"title": {"text": "trained-label margin"}, "zeroline": True},
                         yaxis={"title": {"text": "examples"}})
    return Panel("example-margins", title, caption, {"data": traces, "layout": layout})


def data_map_panel(analysis: Any) -> Panel:
    """Swayamdipta et al.'s data map: each example's mean margin against its variability."""
    title = "Data map"
    apart = ("corrupted and clean examples apart" if analysis.has_corrupted
             else "all of them clean (this run has no corrupted labels)")
    caption = ("Each training example's mean trained-label margin over the evaluations "
               f"(confidence) against its standard deviation (variability), {apart}: "
               "hard-to-learn examples sit low, easy ones high, and examples learnt then lost "
               "in between with high variability.")
    d = analysis.example_dynamics
    if d is None:
        return Panel("data-map", title, caption, note="The run did not record its examples' "
                     "margins during training: train it with TrainConfig(track_examples=True) "
                     "(--track-examples).")
    traces = []
    for name, mask, color in (("clean", ~d.corrupted, CLASS_COLORS["generalizing"]),
                              ("corrupted", d.corrupted, CLASS_COLORS["memorizing"])):
        if not bool(mask.any()):
            continue
        traces.append({"type": "scattergl", "mode": "markers", "name": f"{name} "
                       f"({int(mask.sum())})", "x": numbers(d.variability[mask]),
                       "y": numbers(d.confidence[mask]),
                       "marker": {"color": color, "size": 4, "opacity": 0.5},
                       "hovertemplate": "variability %{x:.3g}<br>confidence %{y:.3g}"
                                        "<extra></extra>"})
    layout = base_layout(420, xaxis={"title": {"text": "variability (std of the margin)"}},
                         yaxis={"title": {"text": "confidence (mean margin)"}})
    return Panel("data-map", title, caption, {"data": traces, "layout": layout})


def memorized_neurons_panel(analysis: Any) -> Panel:
    """Memorized examples x neurons: each neuron's share of each example's margin."""
    title = "Memorized examples x neurons"
    ex = analysis.examples
    caption_base = ("Each neuron's contribution to a memorized example's margin, as a share of "
                    "that margin, for the memorized examples with the largest margins (rows) "
                    "and the neurons ordered from least to most periodic (columns; low-IPR "
                    "neurons left of the line).")
    if not analysis.has_corrupted:
        return Panel("memorized-neurons", "Examples x neurons",
                     "Each neuron's contribution to the margins of the examples held against "
                     "the rule.", note="This run has no corrupted labels: no example is held "
                     "against the rule, so there is nothing to show here.")
    if ex is None:
        return _no_examples("memorized-neurons", title, caption_base)
    if ex.memorized.numel() == 0:
        return Panel("memorized-neurons", title, caption_base,
                     note="No corrupted example is memorized by this network.")
    rows = ex.memorized[ex.margin[ex.memorized].argsort(descending=True)[:HEATMAP_EXAMPLES]]
    ipr = analysis.ipr.combined if analysis.ipr.site == ex.site else None
    order = (torch.nan_to_num(ipr, nan=-1.0).argsort() if ipr is not None
             else torch.arange(ex.contributions.shape[1]))
    share = ex.contributions[rows][:, order] / ex.margin[rows, None]
    low = int(ex.low_ipr.sum())
    lim = float(share.abs().quantile(0.99)) or 1.0
    data = [{"type": "heatmap", "z": numbers(share, 3), "zmin": -lim, "zmax": lim,
             "colorscale": "RdBu", "reversescale": True,
             "colorbar": {"title": {"text": "share"}},
             "hovertemplate": "neuron rank %{x}<br>example %{y}<br>share %{z:.3f}"
                              "<extra></extra>"}]
    layout = base_layout(420, xaxis={"title": {"text": "neurons, least periodic first"}},
                         yaxis={"title": {"text": "memorized examples"}, "showticklabels":
                                False})
    if ipr is not None:
        layout["shapes"] = [{"type": "line", "x0": low - 0.5, "x1": low - 0.5, "y0": 0, "y1": 1,
                             "xref": "x", "yref": "paper",
                             "line": {"color": "#222", "width": 1.5, "dash": "dash"}}]
    caption = (caption_base + f" The {low} low-IPR neurons hold "
               f"{percent(ex.margin_share_low_ipr())} of the memorized margin and "
               f"{percent(ex.support_share_low_ipr())} of the votes for the trained labels.")
    return Panel("memorized-neurons", title, caption, {"data": data, "layout": layout})
