"""Compact displays of mechmem's objects: one-line text for `repr`, a small HTML table for
Jupyter's `_repr_html_`.

The HTML is inert: no script, no style sheet, no link or image, nothing fetched; every value
(run names and settings come from files) is escaped with `html.escape`.
"""

import html
import math
from collections.abc import Iterable, Mapping
from typing import Any

# Settings worth a row in a display, in this order, when a config has them.
KEY_SETTINGS = ("model", "op", "p", "train_frac", "corrupt_frac", "width", "d_model", "norm",
                "dropout", "loss", "optimizer", "lr", "weight_decay", "batch_size", "steps",
                "seed")


def percent(x: Any) -> str:
    """A fraction as a percentage with one decimal; "n/a" for None or NaN."""
    if x is None:
        return "n/a"
    x = float(x)
    return "n/a" if not math.isfinite(x) else f"{100 * x:.1f}%"


def key_settings(config: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """The `KEY_SETTINGS` a (trainer) config has, as (name, value) pairs."""
    return [(k, config[k]) for k in KEY_SETTINGS if k in config]


def html_table(title: str, rows: Iterable[tuple[str, Any]]) -> str:
    """A two-column table under a caption, every string escaped; the values' `str`."""
    body = "".join(
        f'<tr><th style="text-align:left">{html.escape(str(k))}</th>'
        f'<td style="text-align:left">{html.escape(str(v))}</td></tr>'
        for k, v in rows)
    return (f'<table><caption style="text-align:left;font-weight:bold">'
            f"{html.escape(title)}</caption>{body}</table>")


def _steps(history: Mapping[str, Any]) -> str:
    steps = history.get("step") or []
    return f"{float(steps[-1]):g}" if len(steps) else "unknown"


def _last(history: Mapping[str, Any], key: str) -> Any:
    values = history.get(key) or []
    return values[-1] if len(values) else None


def _family(obj: Any) -> str:
    try:
        return str(obj.family)
    except TypeError:  # a model of no mechmem family, analysed through its neuron sites
        return type(obj.model).__name__


def analysis_repr(a: Any) -> str:
    name = repr(a.name) if a.name else "unnamed"
    return (f"Analysis({name}: {_family(a)}, {a.phase.phase}, train {percent(a.accuracy.train)}, "
            f"test {percent(a.accuracy.test)}, step {_steps(a.history)})")


def _event(e: Any) -> str:
    """"step N", "never", or "unknown: why" for an event of `training_dynamics`."""
    if e.step is not None:
        return f"step {e.step}"
    return f"unknown: {e.reason}" if getattr(e, "unknown", False) else "never"


def analysis_html(a: Any) -> str:
    acc, n = a.accuracy, a.neurons
    high, low = getattr(a, "class_names", ("periodic", "non-periodic"))
    rows: list[tuple[str, Any]] = [
        ("name", a.name or "unnamed run"), ("family", _family(a)),
        ("phase", f"{a.phase.phase}: {a.phase.reason}"),
        ("train / test", f"{percent(acc.train)} / {percent(acc.test)}"),
        *([("clean train", percent(acc.clean_train)),
           ("corrupted: memorized / true label",
            f"{percent(acc.corrupted_memorized)} / {percent(acc.corrupted_true)}")]
          if acc.n_corrupted else [("corrupted labels", "none")]),
        ("step", _steps(a.history)),
        (f"neurons at {a.ipr.site}",
         f"{n.generalizing} {high}, {n.memorizing} {low}, {n.dead} dead"),
        ("mean IPR", "n/a" if not math.isfinite(a.ipr.mean) else f"{a.ipr.mean:.3f}"),
    ]
    evidence = getattr(a, "evidence", None)
    if evidence is not None:
        basis = "pruning" if evidence.basis == "causal" else "IPR only"
        rows.append(("neuron class names", f"from {basis}: {evidence.reason}"))
    d = getattr(a, "dynamics", None)
    if d is not None:
        corrupted = getattr(a, "has_corrupted", True)
        events = (("memorization" if corrupted else "train 90%", d.memorization),
                  ("grokking", d.grokking), ("unlearning", d.unlearning),
                  ("forgetting", d.forgetting))
        rows += [(name, _event(e)) for name, e in events if corrupted or name != "unlearning"]
    spec = a.dataset.spec
    rows += [("task", f"{spec.op} mod {spec.p}, alpha {spec.train_frac}, xi "
                      f"{spec.corrupt_frac}")]
    rows += [(k, v) for k, v in key_settings(a.config) if k not in ("op", "p", "train_frac",
                                                                      "corrupt_frac", "model")]
    return html_table("mechmem Analysis", rows)


def checkpoint_repr(c: Any) -> str:
    name = repr(c.name) if c.name else "unnamed"
    n_snap = len(c.snapshots.get("step", ())) if c.snapshots else 0
    n_eval = len(c.history.get("step", ())) if c.history else 0
    where = f", {str(c.path)!r}" if c.path is not None else ""
    return (f"Checkpoint({name}: {c.family} p={c.dataset.p}, step {c.step}, {n_eval} "
            f"evaluations, {n_snap} snapshots{where})")


def checkpoint_html(c: Any) -> str:
    spec = c.dataset.spec
    rows: list[tuple[str, Any]] = [
        ("name", c.name or "unnamed run"), ("family", c.family), ("step", c.step),
        ("task", f"{spec.op} mod {spec.p}, alpha {spec.train_frac}, xi {spec.corrupt_frac}"),
    ]
    if c.history:
        rows.append(("last evaluation: train / test",
                     f"{percent(_last(c.history, 'train_acc'))} / "
                     f"{percent(_last(c.history, 'test_acc'))} at step {_steps(c.history)}"))
    rows.append(("snapshots", len(c.snapshots.get("step", ())) if c.snapshots else 0))
    config = c.train_config if c.train_config is not None else c.model.cfg.to_dict()
    rows += [(k, v) for k, v in key_settings(config) if k not in ("op", "p", "train_frac",
                                                                    "corrupt_frac")]
    if c.path is not None:
        rows.append(("path", str(c.path)))
    return html_table("mechmem Checkpoint", rows)


def sweep_html(r: Any) -> str:
    config = r.config
    counts = r.phase_counts()
    rows: list[tuple[str, Any]] = [
        ("name", config.name or "unnamed sweep"), ("path", str(r.path)),
        ("cells", f"{len(r.cells)} of {r.n_cells} done"),
        ("phases", ", ".join(f"{k} {v}" for k, v in counts.items()) or "none yet"),
    ]
    rows += [(f"axis {f}", ", ".join(str(v) for v in values)) for f, values in config.axes]
    swept = set(config.axis_names)
    rows += [(k, v) for k, v in key_settings(config.base.to_dict()) if k not in swept]
    return html_table("mechmem SweepResult", rows)
