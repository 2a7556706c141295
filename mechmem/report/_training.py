"""Report figures over training time: accuracy, loss, weight-norm and IPR curves with the
grokking and unlearning stages marked, and the IPR histogram at the start and the end."""

import copy
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..analysis.ipr import ipr_scores
from ._plot import ACCURACIES, CLASS_COLORS, PART_COLORS, Panel, base_layout, numbers, vline

# history key of each accuracy (see the trainer's history record)
_HISTORY_ACC = {
    "train": "train_acc",
    "test": "test_acc",
    "clean_train": "clean_train_acc",
    "corrupted_memorized": "corrupted_memorized_acc",
    "corrupted_true": "corrupted_true_acc",
}
_HIGH = 0.9  # the paper's 90% line between high and low accuracy (PAPER.md, Table 2)
_FALL = 0.05  # a train-accuracy drop below its peak that counts as unlearning


@dataclass(frozen=True)
class Stages:
    """Steps where the training dynamics change (None where that stage did not happen).

    Attributes:
        grokking: first evaluated step with test accuracy >= 90%, if it started below.
        unlearning: (start, end) steps of the fall of train accuracy from its peak (>= 90%) to
            within 2 points of its final value, when it fell by at least 5 points.
        forgetting: last step with test accuracy >= 90% when the run ends below 90%.
    """

    grokking: float | None = None
    unlearning: tuple[float, float] | None = None
    forgetting: float | None = None


def _series(history: Mapping[str, Sequence[float]], key: str) -> np.ndarray | None:
    values = history.get(key)
    if values is None or len(values) == 0:
        return None
    return np.asarray([float(v) for v in values], dtype=np.float64)


def find_stages(history: Mapping[str, Sequence[float]]) -> Stages:
    """Locate grokking, unlearning and forgetting in a training history (see `Stages`)."""
    steps = _series(history, "step")
    test = _series(history, "test_acc")
    train = _series(history, "train_acc")
    if steps is None:
        return Stages()
    grokking = forgetting = None
    unlearning = None
    if test is not None and len(test) == len(steps) and np.isfinite(test).any():
        high = np.flatnonzero(np.nan_to_num(test, nan=0.0) >= _HIGH)
        if high.size and high[0] > 0:
            grokking = float(steps[high[0]])
        if high.size and np.isfinite(test[-1]) and test[-1] < _HIGH:
            forgetting = float(steps[high[-1]])
    if train is not None and len(train) == len(steps) and np.isfinite(train).all():
        peak, final = float(train.max()), float(train[-1])
        if peak >= _HIGH and peak - final >= _FALL:
            start = int(np.flatnonzero(train >= peak - 0.02)[-1])
            after = np.flatnonzero(train[start:] <= final + 0.02)
            end = start + int(after[0]) if after.size else len(train) - 1
            unlearning = (float(steps[start]), float(steps[end]))
    return Stages(grokking=grokking, unlearning=unlearning, forgetting=forgetting)


def _stage_marks(stages: Stages) -> tuple[list[dict], list[dict]]:
    shapes: list[dict] = []
    notes: list[dict] = []
    if stages.grokking is not None:
        s, n = vline(stages.grokking, "grokking", "#d62728", row=0)
        shapes.append(s)
        notes.append(n)
    if stages.unlearning is not None:
        a, b = stages.unlearning
        shapes.append({"type": "rect", "x0": a, "x1": b, "y0": 0, "y1": 1, "xref": "x",
                       "yref": "paper", "fillcolor": "#9467bd", "opacity": 0.12,
                       "line": {"width": 0}, "layer": "below"})
        notes.append({"text": "unlearning", "x": (a + b) / 2, "y": 1.0, "xref": "x",
                      "yref": "paper", "showarrow": False, "yanchor": "bottom", "yshift": 14,
                      "font": {"size": 11, "color": "#9467bd"}})
    if stages.forgetting is not None:
        s, n = vline(stages.forgetting, "forgetting", "#7f7f7f", row=2)
        shapes.append(s)
        notes.append(n)
    return shapes, notes


def _curves(
    steps: list, history: Mapping[str, Sequence[float]], lines: Sequence[tuple[str, str, str]]
) -> list[dict]:
    traces = []
    for key, label, color in lines:
        values = _series(history, key)
        if values is None or len(values) != len(steps):
            continue
        traces.append({"type": "scatter", "mode": "lines", "name": label, "x": steps,
                       "y": numbers(values), "line": {"color": color, "width": 2}})
    return traces


def stage_sentence(stages: Stages) -> str:
    """The stages found, as a short clause for captions."""
    parts = []
    if stages.grokking is not None:
        parts.append(f"test accuracy first reaches 90% at step {stages.grokking:g} (grokking)")
    if stages.unlearning is not None:
        a, b = stages.unlearning
        parts.append(f"train accuracy falls from its peak between steps {a:g} and {b:g}"
                     " (unlearning of the corrupted labels)")
    if stages.forgetting is not None:
        parts.append(f"test accuracy is last above 90% at step {stages.forgetting:g} and then"
                     " lost (forgetting)")
    return "; ".join(parts) if parts else "no grokking or unlearning stage shows in this run"


def training_panels(history: Mapping[str, Sequence[float]]) -> list[Panel]:
    """Accuracy, loss, weight-norm and mean-IPR curves over training steps."""
    steps_arr = _series(history, "step")
    if steps_arr is None:
        return [Panel("training", "Training curves", "Training curves over steps.",
                      note="This model carries no training history (it was built in Python or "
                           "trained outside mechmem's trainer), so there are no training "
                           "curves to show.")]
    steps = numbers(steps_arr, digits=12)
    stages = find_stages(history)
    shapes, notes = _stage_marks(stages)

    def figure(traces: list[dict], ytitle: str, **yaxis: Any) -> dict:
        layout = base_layout(380, shapes=shapes, annotations=notes,
                             xaxis={"title": {"text": "step"}},
                             yaxis={"title": {"text": ytitle}, **yaxis})
        layout["margin"]["t"] = 60  # room for three rows of stage labels
        return {"data": traces, "layout": layout}

    acc_lines = [(_HISTORY_ACC[k], label, color) for k, label, color in ACCURACIES]
    palette = ("#8172b3", "#937860", "#da8bc3", "#8c8c8c", "#ccb974", "#64b5cd")
    norm_keys = [k for k in history if k.startswith("norm_")] or ["norm_U", "norm_V", "norm_W"]
    norm_lines = [(k, f"||{k[5:]}||", PART_COLORS.get(k[5:], palette[i % len(palette)]))
                  for i, k in enumerate(norm_keys)]
    site_keys = [k for k in history if k.startswith("ipr_") and k != "ipr_mean"]
    ipr_lines = [("ipr_mean", "mean IPR", "#1b9e77")] + [
        (k, f"mean IPR at {k[4:]}", palette[i % len(palette)]) for i, k in enumerate(site_keys)]
    specs = [
        ("training-accuracy", "Accuracies", acc_lines, "accuracy", {"range": [-0.02, 1.05]},
         "Each line is one accuracy over training steps (fractions; train is measured against "
         f"the labels trained on); marked stages: {stage_sentence(stages)}."),
        ("training-loss", "Losses",
         [("train_loss", "train loss", "#1f77b4"), ("test_loss", "test loss", "#d62728")],
         "loss", {"type": "log"},
         "Train loss (against the labels trained on, corrupted ones included) and test loss "
         "on a log scale: test loss falls when the network generalizes, and train loss stays "
         "up when it stops fitting the corrupted labels."),
        ("training-norms", "Weight norms",
         norm_lines, "Frobenius norm", {},
         "Frobenius norms of the weight matrices over training: weight decay holds them "
         "in check, and a collapse towards zero is what forgetting looks like."),
        ("training-ipr", "Mean IPR", ipr_lines, "mean IPR",
         {"rangemode": "tozero"},
         "The network's mean inverse participation ratio (of its primary neurons, and of its "
         "other neuron sites where it has them): it rises as neurons become periodic "
         "(generalizing) and stays low while they memorize."),
    ]
    panels = []
    for key, title, lines, ytitle, yaxis, caption in specs:
        traces = _curves(steps, history, lines)
        if traces:
            panels.append(Panel(key, title, caption, figure(traces, ytitle, **yaxis)))
        else:
            names = ", ".join(name for name, _, _ in lines)
            panels.append(Panel(key, title, caption,
                                note=f"The training history does not record {names}."))
    return panels


def _snapshot_ipr(analysis: Any, index: int) -> torch.Tensor | None:
    """Combined per-neuron IPR of the weights in snapshot `index` (at the site the analysis
    measured), or None if unusable."""
    snaps = analysis.snapshots
    model = analysis.model
    state = model.state_dict()
    names = [k for k in snaps if k != "step"]
    if not names:
        return None
    try:
        values = {k: snaps[k][index].detach() for k in names}
    except (IndexError, TypeError, AttributeError):
        return None
    if any(k not in state or tuple(v.shape) != tuple(state[k].shape) for k, v in
           values.items()):
        return None
    snap_model = copy.deepcopy(model).to("cpu")
    with torch.no_grad():
        params = dict(snap_model.named_parameters())
        for k, v in values.items():
            params[k].copy_(v)
    return ipr_scores(snap_model, analysis.dataset.spec.op, r=analysis.ipr.r,
                      convention=analysis.ipr.convention, site=analysis.ipr.site).combined


def _first_snapshot(analysis: Any) -> tuple[torch.Tensor, float] | None:
    steps = analysis.snapshots.get("step") if analysis.snapshots else None
    if steps is None or len(steps) == 0:
        return None
    first = float(steps[0])
    final = analysis.history.get("step", [])
    if len(steps) == 1 and final and first >= float(final[-1]):
        return None  # a single snapshot at the end shows nothing the end histogram does not
    values = _snapshot_ipr(analysis, 0)
    return None if values is None else (values, first)


def ipr_histogram_panel(analysis: Any) -> Panel:
    """Histogram of per-neuron IPR at the end, and at the first snapshot when there is one."""
    ipr = analysis.ipr
    end = ipr.combined.detach()
    end = end[torch.isfinite(end)]
    bins = {"start": 0.0, "end": 1.0 + 1e-9, "size": 0.02}
    traces = []
    start = _first_snapshot(analysis)
    if start is not None:
        values, step = start
        values = values[torch.isfinite(values)]
        label = "at init (step 0)" if step == 0 else f"first snapshot (step {step:g})"
        traces.append({"type": "histogram", "name": label, "x": numbers(values),
                       "xbins": bins, "marker": {"color": "#bbbbbb"}, "opacity": 0.75})
    final_steps = analysis.history.get("step", [])
    end_label = f"end (step {float(final_steps[-1]):g})" if final_steps else "end"
    traces.append({"type": "histogram", "name": end_label, "x": numbers(end), "xbins": bins,
                   "marker": {"color": CLASS_COLORS["generalizing"]}, "opacity": 0.75})
    threshold = float(analysis.neurons.threshold)
    shapes, notes = [], []
    if math.isfinite(threshold):
        s, n = vline(threshold, f"threshold {threshold:.3g} ({analysis.neurons.method})")
        shapes, notes = [s], [n]
    layout = base_layout(
        380, barmode="overlay", shapes=shapes, annotations=notes,
        xaxis={"title": {"text": f"neuron IPR ({ipr.convention}, r = {ipr.r:g})"},
               "range": [0, 1.02]},
        yaxis={"title": {"text": "neurons"}},
    )
    when = ("at the first snapshot (grey) and at the end (green)" if start is not None
            else "at the end of training (no earlier weight snapshots are stored)")
    caption = (f"How many neurons have each IPR {when}: periodic, generalizing neurons sit near "
               "1 and memorizing ones near 0, and the dashed line is the threshold that "
               "separates the two classes.")
    return Panel("ipr-histogram", "IPR histogram", caption,
                 {"data": traces, "layout": layout})
