"""Report figures about single neurons: Fourier spectra, the weights of the most and least
periodic neurons, neurons per dominant frequency, and BatchNorm gain against IPR."""

from collections.abc import Sequence
from typing import Any

import torch

from ..data import task_coordinates
from ._plot import (
    CLASS_COLORS,
    Panel,
    axis_name,
    axis_ref,
    base_layout,
    class_names,
    numbers,
    panel_titles,
    side_by_side,
)

_N_EXTREME = 3  # neurons shown in each of the "most" and "least periodic" figures


def spectra_panel(analysis: Any) -> Panel:
    """Heatmaps of each neuron's power per frequency for U, V and W, neurons sorted by IPR."""
    fourier, ipr, classes = analysis.fourier, analysis.ipr, analysis.neurons
    if fourier is None:
        return Panel("spectra", "Neuron Fourier spectra", "Each neuron's weight spectra.",
                     note=_no_weights(analysis))
    order = ipr.ranking(descending=True)
    names = [f"neuron {int(k)}" for k in order]
    freqs = [int(f) for f in fourier.freqs]
    domains = side_by_side(3, gap=0.04)
    parts = (("U rows", fourier.power_U), ("V rows", fourier.power_V),
             ("W columns", fourier.power_W))
    traces = []
    layout = base_layout(560, coloraxis={
        "colorscale": "Viridis", "cmin": 0, "cmax": 1,
        "colorbar": {"title": {"text": "share of power"}, "thickness": 12}})
    layout["margin"] = {"l": 20, "r": 10, "t": 30, "b": 60}
    for i, ((title, power), domain) in enumerate(zip(parts, domains, strict=True)):
        power = power.detach().to(torch.float64)[order]
        total = power.sum(dim=1, keepdim=True)
        share = torch.where(total > 0, power / total.clamp_min(1e-300), torch.nan)
        traces.append({
            "type": "heatmap", "x": freqs, "y": names, "z": numbers(share, digits=3),
            "coloraxis": "coloraxis", "xaxis": axis_ref("x", i), "yaxis": "y",
            "hovertemplate": f"%{{y}}<br>{title}: frequency %{{x}}<br>"
                             "share of power %{z}<extra></extra>",
        })
        layout[axis_name("x", i)] = {"domain": domain, "title": {"text": "frequency"},
                                     "anchor": "y"}
    layout["yaxis"] = {"type": "category", "autorange": "reversed", "showticklabels": False,
                       "title": {"text": "neurons (highest IPR on top)"}}
    layout["annotations"] = panel_titles([t for t, _ in parts], domains)
    n_gen = int(classes.generalizing)
    if 0 < n_gen < len(names):  # a line between the generalizing and the other neurons
        layout["shapes"] = [{"type": "line", "xref": "paper", "x0": 0, "x1": 1, "yref": "y",
                             "y0": n_gen - 0.5, "y1": n_gen - 0.5,
                             "line": {"color": "white", "width": 1.5, "dash": "dot"}}]
    high, low = class_names(analysis)
    caption = ("Each row is one neuron (highest IPR on top; the dotted line separates the "
               f"{n_gen} {high} neurons from the {low} ones) and each cell the share of that "
               "neuron's spectral power at one frequency: a single bright cell per row is a "
               "periodic neuron, a smear across frequencies a non-periodic one.")
    return Panel("spectra", "Neuron Fourier spectra", caption,
                 {"data": traces, "layout": layout})


def _weights_panel(analysis: Any, neurons: list[int], key: str, which: str) -> Panel:
    model, ipr = analysis.model, analysis.ipr
    coords = task_coordinates(analysis.dataset.spec.op, model.cfg.p)
    P = coords.period
    vectors = (("U row", model.U.detach(), coords.a), ("V row", model.V.detach(), coords.b),
               ("W column", model.W.detach().T, coords.out))
    domains = side_by_side(3)
    palette = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd")
    traces = []
    layout = base_layout(400)
    for i, ((title, weights, coord), domain) in enumerate(zip(vectors, domains, strict=True)):
        coord = coord.to(torch.int64)
        for j, k in enumerate(neurons):
            f = max(int(analysis.fourier.dominant_freq[k]), 1)
            # Where each residue falls within the neuron's own period: along this axis a
            # neuron periodic at frequency f draws one clean cosine, whatever f is.
            position = (f * coord) % P
            residues = torch.argsort(position)
            residues = residues[coord[residues] >= 0]  # residues without a coordinate sit out
            traces.append({
                "type": "scatter", "mode": "lines+markers",
                "name": f"neuron {k} (frequency {f}, IPR {float(ipr.combined[k]):.2f})",
                "legendgroup": str(k), "showlegend": i == 0,
                "x": numbers(position[residues].to(torch.float64) / P),
                "y": numbers(weights[k, residues]),
                "customdata": [int(r) for r in residues], "marker": {"size": 3},
                "line": {"color": palette[j % len(palette)], "width": 1.5},
                "xaxis": axis_ref("x", i), "yaxis": axis_ref("y", i),
                "hovertemplate": f"{title}, residue %{{customdata}}: %{{y}}<extra>neuron {k}"
                                 "</extra>",
            })
        layout[axis_name("x", i)] = {"domain": domain, "anchor": axis_ref("y", i),
                                     "range": [0, 1], "title": {"text": "position in period"}}
        layout[axis_name("y", i)] = {"anchor": axis_ref("x", i),
                                     **({"title": {"text": "weight"}} if i == 0 else {})}
    layout["annotations"] = panel_titles([t for t, _, _ in vectors], domains)
    caption = (f"The weights of the {len(neurons)} {which} neurons, each residue r placed at "
               "(f c(r) mod P) / P, its position within the neuron's dominant period (f the "
               "neuron's frequency, c the task coordinate, P its period): a periodic neuron "
               "draws one clean cosine in its U row, V row and W column, a non-periodic one "
               "a cloud.")
    return Panel(key, f"The {which} neurons", caption, {"data": traces, "layout": layout})


def _no_weights(analysis: Any) -> str:
    return (f"Weight Fourier phases: the {analysis.ipr.site} neurons of this model have no "
            "weights that read both operands' residues and write the logits (attention or "
            "another layer lies in between), so there are no weight spectra to show; the "
            "frequency chart below reads each neuron's key frequency from its activations "
            "instead.")


def _live_by_ipr(analysis: Any) -> list[int] | str:
    """Live neurons from the most to the least periodic, or why no weights can be shown."""
    if analysis.fourier is None:
        return _no_weights(analysis)
    combined = analysis.ipr.combined
    live = [int(k) for k in analysis.ipr.ranking(descending=True)
            if torch.isfinite(combined[k])]
    return live or "Every neuron is dead (zero or non-finite weights): no weights to show."


def extreme_weights_panel(analysis: Any, which: str) -> Panel:
    """Weight vectors of the `_N_EXTREME` "most" or "least" periodic live neurons."""
    key, label = ("weights-most", "most periodic") if which == "most" else (
        "weights-least", "least periodic")
    live = _live_by_ipr(analysis)
    if isinstance(live, str):
        return Panel(key, f"The {label} neurons", f"The weights of the {label} neurons.",
                     note=live)
    n = min(_N_EXTREME, len(live))
    return _weights_panel(analysis, live[:n] if which == "most" else live[::-1][:n], key, label)


def neuron_weights_panel(analysis: Any, neurons: Sequence[int]) -> Panel:
    """Weight vectors of the chosen neurons, drawn as the extreme-neuron figures are."""
    width = int(analysis.ipr.combined.numel())
    chosen = [int(k) for k in neurons]
    if not chosen or any(not 0 <= k < width for k in chosen):
        raise ValueError(f"`neurons` must be indices in [0, {width}), got {list(neurons)}.")
    if analysis.fourier is None:
        return Panel("weights", "Neuron weights", "The weights of chosen neurons.",
                     note=_no_weights(analysis))
    return _weights_panel(analysis, chosen, "weights", "chosen")


def frequency_panel(analysis: Any) -> Panel:
    """Stacked bars: neurons per dominant frequency, split by class."""
    fourier, classes = analysis.fourier, analysis.neurons
    high, low = class_names(analysis)
    title = "Neurons per dominant frequency"
    caption = ("How many neurons have each frequency as their strongest (DC excluded), split "
               f"by class: the {high} neurons show which frequencies the network's "
               f"periodic circuit uses, while a {low} neuron's strongest frequency is "
               "incidental.")
    if fourier is not None:
        dominant = [int(f) for f in fourier.dominant_freq]
    else:
        fr = analysis.frequencies
        dominant = [int(f) for f in fr.key_freq]
        caption = ("How many neurons have each key frequency (the frequency explaining most of "
                   "the variance of the neuron's activation over all input pairs; mean share "
                   f"explained {float(fr.frac_explained.nanmean()):.2f}), split by class: the "
                   f"{high} neurons show which frequencies the network's periodic circuit "
                   "uses.")
    freqs = sorted({f for f in dominant if f >= 0})
    if not freqs:
        return Panel("frequencies", title, caption, note="Every neuron is dead: no frequencies.")
    traces = []
    for label, name in (("generalizing", high), ("memorizing", low)):
        counts = [sum(1 for d, c in zip(dominant, classes.labels, strict=True)
                      if d == f and c == label) for f in freqs]
        traces.append({"type": "bar", "name": f"{name} neurons", "x": freqs, "y": counts,
                       "marker": {"color": CLASS_COLORS[label]}})
    layout = base_layout(360, barmode="stack",
                         xaxis={"title": {"text": "dominant frequency"}, "type": "category"},
                         yaxis={"title": {"text": "neurons"}})
    return Panel("frequencies", title, caption, {"data": traces, "layout": layout})


def site_ipr_panel(analysis: Any) -> Panel:
    """Histograms of the IPR at every neuron site other than the primary one (the
    transformer's embedding dimensions, the 3-layer MLP's input layer); a note for a model with
    one site."""
    title = "IPR at the other neuron sites"
    others = {k: v for k, v in analysis.site_ipr.items() if k != analysis.ipr.site}
    caption = ("How many neurons (or embedding dimensions) of each other site have each IPR at "
               "the end of training: the transformer's embedding IPR is the paper's (one value "
               "per column of W_E over the tokens); the 3-layer MLP's input layer is its "
               "first layer's rows.")
    if not others:
        return Panel("site-ipr", title, caption,
                     note=f"This model has one neuron site ({analysis.ipr.site}): its IPR "
                          "histogram is the one above.")
    palette = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
    bins = {"start": 0.0, "end": 1.0 + 1e-9, "size": 0.02}
    traces = []
    for i, (name, res) in enumerate(others.items()):
        vals = res.combined[torch.isfinite(res.combined)]
        traces.append({"type": "histogram", "name": f"{name} (mean {res.mean:.3f})",
                       "x": numbers(vals), "xbins": bins, "opacity": 0.75,
                       "marker": {"color": palette[i % len(palette)]}})
    layout = base_layout(340, barmode="overlay",
                         xaxis={"title": {"text": "IPR (rfft, r = 2)"}, "range": [0, 1.02]},
                         yaxis={"title": {"text": "count"}})
    return Panel("site-ipr", title, caption, {"data": traces, "layout": layout})


def batchnorm_panel(analysis: Any) -> Panel:
    """Scatter of BatchNorm |gamma| and effective gain against IPR, coloured by class."""
    title = "BatchNorm gain against IPR"
    bn = analysis.batchnorm
    if bn is None:
        return Panel("batchnorm", title, "BatchNorm scale of each neuron against its IPR.",
                     note="This model has no BatchNorm layer, so there are no BatchNorm factors "
                          "to show.")
    labels = analysis.neurons.labels
    high, low = class_names(analysis)
    domains = side_by_side(2, gap=0.1)
    traces = []
    for i, (values, name) in enumerate(((bn.gamma_abs, "|gamma|"),
                                        (bn.gain, "gain gamma / sqrt(var + eps)"))):
        for label, cls in (("generalizing", high), ("memorizing", low)):
            idx = [k for k, c in enumerate(labels) if c == label]
            traces.append({
                "type": "scatter", "mode": "markers", "name": f"{cls} neurons",
                "legendgroup": label, "showlegend": i == 0, "x": numbers(bn.ipr[idx]),
                "y": numbers(values[idx]), "customdata": idx,
                "marker": {"color": CLASS_COLORS[label], "size": 5, "opacity": 0.7},
                "xaxis": axis_ref("x", i), "yaxis": axis_ref("y", i),
                "hovertemplate": "neuron %{customdata}<br>IPR %{x}<br>"
                                 f"{name} %{{y}}<extra></extra>",
            })
    layout = base_layout(380)
    for i, (domain, name) in enumerate(zip(domains, ("|gamma|", "effective gain"), strict=True)):
        layout[axis_name("x", i)] = {"domain": domain, "anchor": axis_ref("y", i),
                                     "title": {"text": "neuron IPR"}}
        layout[axis_name("y", i)] = {"anchor": axis_ref("x", i), "title": {"text": name}}
    caption = ("Each dot is one neuron: BatchNorm's |gamma| (left) and effective gain (right) "
               "against its IPR; a rising cloud means BatchNorm amplifies periodic neurons and "
               f"damps non-periodic ones (Pearson {bn.pearson:.2f}, Spearman {bn.spearman:.2f} "
               f"for |gamma|; {bn.pearson_gain:.2f} and {bn.spearman_gain:.2f} for the gain).")
    return Panel("batchnorm", title, caption, {"data": traces, "layout": layout})
