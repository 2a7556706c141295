"""Report figure of Nanda et al.'s progress measures over snapshots: restricted, excluded, train
and test loss (log scale), Nanda's three phases shaded and mechmem's stages marked."""

from typing import Any

from ._plot import Panel, base_layout, numbers
from ._training import _stage_marks, stage_sentence

_LINES = (  # curve attribute, legend label, colour
    ("train_loss", "train loss", "#1f77b4"),
    ("test_loss", "test loss", "#d62728"),
    ("restricted_loss", "restricted loss (key frequencies only)", "#2ca02c"),
    ("excluded_loss", "excluded loss (key frequencies removed)", "#ff7f0e"),
)
PHASE_SHADES = (  # NandaPhases attribute, label, colour
    ("memorization", "memorization", "#8c8c8c"),
    ("circuit_formation", "circuit formation", "#17becf"),
    ("cleanup", "cleanup", "#bcbd22"),
)


def _mechmem_stages(dynamics: Any) -> tuple[list[dict], list[dict], str]:
    """mechmem's stages of the run, read from its `Dynamics`: the one place this figure reads
    them."""
    shapes, notes = _stage_marks(dynamics)
    return shapes, notes, stage_sentence(dynamics)


def _phase_shades(phases: Any) -> tuple[list[dict], list[dict]]:
    shapes, notes = [], []
    for attr, label, color in PHASE_SHADES:
        span = getattr(phases, attr)
        if span is None:
            continue
        a, b = span
        shapes.append({"type": "rect", "x0": a, "x1": b, "y0": 0, "y1": 1, "xref": "x",
                       "yref": "paper", "fillcolor": color, "opacity": 0.15,
                       "line": {"width": 0}, "layer": "below"})
        notes.append({"text": label, "x": (a + b) / 2, "y": 0.0, "xref": "x", "yref": "paper",
                      "showarrow": False, "yanchor": "bottom", "yshift": 4,
                      "font": {"size": 11, "color": "#444"}})
    return shapes, notes


def _progress_spec(curves: Any, dynamics: Any) -> dict[str, Any]:
    """The four loss curves of a `ProgressCurves` on a log scale, Nanda's phases shaded (labels
    at the bottom) and mechmem's stages from `dynamics` marked (labels at the top)."""
    steps = numbers(curves.steps, digits=12)
    traces = [{"type": "scatter", "mode": "lines+markers", "name": label, "x": steps,
               "y": numbers(getattr(curves, attr)), "line": {"color": color, "width": 2},
               "marker": {"size": 4}}
              for attr, label, color in _LINES]
    shades, shade_notes = _phase_shades(curves.phases)
    marks, mark_notes, _ = _mechmem_stages(dynamics)
    layout = base_layout(420, shapes=shades + marks, annotations=shade_notes + mark_notes,
                         xaxis={"title": {"text": "step"}},
                         yaxis={"title": {"text": f"{curves.loss} loss"}, "type": "log"})
    layout["margin"]["t"] = 60  # room for the stage labels
    return {"data": traces, "layout": layout}


def _phase_sentence(phases: Any) -> str:
    found = [f"{label} steps {span[0]:g}-{span[1]:g}" for attr, label, _ in PHASE_SHADES
             if (span := getattr(phases, attr)) is not None]
    text = "Nanda's phases (shaded): " + ("; ".join(found) if found else "none located")
    if phases.excluded_change is not None and phases.restricted_change is not None:
        text += (f"; over circuit formation the excluded loss changes by a factor "
                 f"{phases.excluded_change:.3g} and the restricted loss by "
                 f"{phases.restricted_change:.3g}")
    return text + ". " + " ".join(phases.notes)


def progress_panel(analysis: Any) -> Panel:
    """The progress-measure panel of a transformer's analysis; for a model without them, a
    panel without a figure (the page leaves it out: the summary's notes say why)."""
    progress = getattr(analysis, "progress", None)
    title = "Progress measures (Nanda et al.)"
    if progress is None:
        return Panel("progress", title, "", note="Progress measures apply to transformers: they "
                     "read key frequencies from a token embedding, which this model does not have.")
    freqs = ", ".join(map(str, progress.key_freqs)) or "none found"
    labels = ("against the labels trained on (corrupted ones included)"
              if analysis.accuracy.n_corrupted else "")
    if getattr(progress, "definition", "logits") == "mlp":
        caption_head = (
            "TransformerLens's grokking demo's definition: restricted loss reads the logits from "
            "the MLP neurons' activations kept to their mean and their components along the key "
            f"frequencies ({freqs}, read from the final embedding), {progress.loss} on the test "
            "set; excluded loss removes those components from the activations, "
            f"{progress.loss} on the training set {labels}; log scale. ")
    else:
        caption_head = (
            f"Restricted loss keeps only the logits' components along the key frequencies "
            f"({freqs}, read from the final embedding) and the constant; excluded loss removes "
            f"those components; both are {progress.loss} on the training set {labels}, log "
            "scale. ")
    caption_head = caption_head.replace(" ,", ",").replace("  ", " ")
    curves = getattr(analysis, "progress_curves", None)
    if curves is None:
        return Panel("progress", title, caption_head,
                      note="This run stored no weight snapshots, so the progress measures are "
                           f"known only at the end: restricted {progress.restricted_loss:.3g}, "
                           f"excluded {progress.excluded_loss:.3g}, train "
                           f"{progress.train_loss:.3g}, test {progress.test_loss:.3g}.")
    dynamics = getattr(analysis, "dynamics", None)
    _, _, stages = _mechmem_stages(dynamics)
    caption = (caption_head + _phase_sentence(curves.phases)
               + f" mechmem's stages (marked): {stages}.")
    if curves.unsnapshotted:
        caption += (" The snapshots do not hold " + ", ".join(curves.unsnapshotted)
                    + ": every snapshot uses their final values.")
    return Panel("progress", title, caption, _progress_spec(curves, dynamics))
