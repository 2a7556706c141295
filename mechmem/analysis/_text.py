"""The text summary and the JSON object of an `Analysis` (`Analysis.summary()`,
`Analysis.to_json_dict()`): what `mechmem analyze` prints, every claim in the run's own terms."""

import math
from collections.abc import Mapping
from typing import Any

from torch import Tensor, nn

from ..interop._adapter import FAMILY as LENS_FAMILY
from ..models.families import family_of
from ._common import nan_to_none
from .accuracy import METRICS
from .dynamics import dynamics_dict
from .example_dynamics import example_dynamics_dict, example_dynamics_lines
from .examples import examples_dict, examples_lines
from .pruning import ORDERS


def family_name(model: nn.Module) -> str:
    try:
        return family_of(model)
    except TypeError:
        family = getattr(type(model), "family", None)
        return family if family == LENS_FAMILY else type(model).__name__


def family(model: nn.Module) -> str:
    return {"mlp": "2-layer MLP", "mlp3": "3-layer MLP", "transformer": "transformer",
            LENS_FAMILY: "TransformerLens model"}.get(family_name(model), type(model).__name__)


def _plain(x: Any) -> Any:
    """JSON-safe copy: tuples to lists, tensors to lists, NaN/inf to None."""
    if isinstance(x, float):
        return nan_to_none(x)
    if isinstance(x, bool | int | str) or x is None:
        return x
    if isinstance(x, Tensor):
        return _plain(x.tolist())
    if isinstance(x, Mapping):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    return str(x)


def analysis_json(a: Any) -> dict[str, Any]:
    pruning = {
        order: {"fraction": c.fraction} | {m: getattr(c, m) for m in METRICS}
        for order, c in a.pruning.curves.items()
    }
    out = {
        "name": a.name,
        "config": a.config,
        "phase": a.phase.phase,
        "phase_reason": a.phase.reason,
        "accuracy": {m: getattr(a.accuracy, m) for m in METRICS},
        "ipr": {
            "mean": a.ipr.mean,
            "convention": a.ipr.convention,
            "r": a.ipr.r,
            "dead_neurons": a.ipr.dead,
            "nonfinite_neurons": a.ipr.nonfinite,
        },
        "neurons": {
            "generalizing": a.neurons.generalizing,
            "memorizing": a.neurons.memorizing,
            "dead": a.neurons.dead,
            "threshold": a.neurons.threshold,
            "method": a.neurons.method,
            **_evidence_json(a),
        },
        "fourier": None if a.fourier is None else {"freq_counts": a.fourier.freq_counts},
        "family": family_name(a.model),
        "sites": {
            name: {"ipr_mean": r.mean, "parts": list(r.parts), "neurons": int(r.combined.numel()),
                   "dead_neurons": r.dead}
            for name, r in a.site_ipr.items()
        },
        "frequencies": {
            "site": a.frequencies.site,
            "freq_counts": a.frequencies.freq_counts,
            "mean_frac_explained": float(a.frequencies.frac_explained.nanmean()),
            "periodic_neurons": int(a.frequencies.periodic().sum()),
        },
        "notes": list(a.notes),
        "dynamics": None if a.dynamics is None else dynamics_dict(a.dynamics),
        "pruning": pruning,
        "pruning_method": a.pruning.method,
        "batchnorm": None
        if a.batchnorm is None
        else {
            "pearson": a.batchnorm.pearson,
            "spearman": a.batchnorm.spearman,
            "pearson_gain": a.batchnorm.pearson_gain,
            "spearman_gain": a.batchnorm.spearman_gain,
            "gamma_abs_generalizing": a.batchnorm.gamma_abs_generalizing,
            "gamma_abs_memorizing": a.batchnorm.gamma_abs_memorizing,
        },
        "corrupted_logits": {
            "count": int(a.logits.index.numel()),
            "frac_corrupted_wins": a.logits.frac_corrupted_wins,
        },
        "progress": _progress_json(a),
        "examples": None if a.examples is None else examples_dict(a.examples) | {
            "dynamics": None if a.example_dynamics is None
            else example_dynamics_dict(a.example_dynamics)},
    }
    return _plain(out)


def _evidence_json(a: Any) -> dict[str, Any]:
    """The class names and their basis: "generalizing" and "memorizing" above count the
    neurons at or above and below the threshold, whatever the classes are called."""
    e = a.evidence
    high, low = a.class_names
    return {"names": {"generalizing": high, "memorizing": low},
            "basis": "ipr" if e is None else e.basis,
            "basis_reason": None if e is None else e.reason,
            "memorized_accuracy": None if e is None else {
                "all": e.memorized, "without_low_ipr": e.memorized_without_low,
                "without_high_ipr": e.memorized_without_high}}


def _progress_json(a: Any) -> dict[str, Any] | None:
    m, c = a.progress, a.progress_curves
    if m is None:
        return None
    out: dict[str, Any] = {
        "key_freqs": list(m.key_freqs), "loss": m.loss, "definition": m.definition,
        "train_loss": m.train_loss,
        "test_loss": m.test_loss, "restricted_loss": m.restricted_loss,
        "excluded_loss": m.excluded_loss, "curves": None, "phases": None}
    if c is not None:
        out["curves"] = {"steps": c.steps, "train_loss": c.train_loss,
                         "test_loss": c.test_loss, "restricted_loss": c.restricted_loss,
                         "excluded_loss": c.excluded_loss,
                         "unsnapshotted": list(c.unsnapshotted)}
        ph = c.phases
        out["phases"] = {"memorization": ph.memorization,
                         "circuit_formation": ph.circuit_formation, "cleanup": ph.cleanup,
                         "excluded_change": ph.excluded_change,
                         "restricted_change": ph.restricted_change, "notes": list(ph.notes)}
    return out


def _pct(x: float) -> str:
    return "   n/a" if not math.isfinite(x) else f"{100 * x:5.1f}%"


def _note(a: Any, prefix: str) -> str | None:
    """The note (see `analyze`) that stands for one section of the summary, if any."""
    return next((n[len(prefix):].strip() for n in a.notes if n.startswith(prefix)), None)


def _accuracy_lines(a: Any) -> list[str]:
    acc = a.accuracy
    if not a.has_corrupted:
        return ["accuracy   train   test    (no corrupted labels)",
                f"           {_pct(acc.train)}  {_pct(acc.test)}"]
    return ["accuracy   train   test    clean   memorized  inverted",
            f"           {_pct(acc.train)}  {_pct(acc.test)}  {_pct(acc.clean_train)}"
            f"  {_pct(acc.corrupted_memorized)}     {_pct(acc.corrupted_true)}"]


def _pruning_lines(a: Any) -> list[str]:
    """What pruning does to the memorized-label and test accuracy, or to the train and test
    accuracy of a run without corrupted labels."""
    first = "corrupted_memorized" if a.has_corrupted else "train"
    what = "memorized" if a.has_corrupted else "train"
    lines = [f"pruning    ({a.pruning.method}; {what} / test accuracy after removing a fraction)",
             "           order            " + "".join(f"{f:>13.0%}" for f in (0.1, 0.3, 0.6, 0.9))]
    for order in ORDERS:
        c = a.pruning.curves[order]
        cells = []
        for f in (0.1, 0.3, 0.6, 0.9):
            v = c.at(f)
            cells.append(f"{_pct(v[first])}/{_pct(v['test']).strip():>6}")
        lines.append(f"           {order:<16} " + "".join(f"{s:>13}" for s in cells))
    return lines


def analysis_summary(a: Any) -> str:
    ds = a.dataset
    high, low = a.class_names
    lines = [
        f"run        {a.name or '(unnamed)'}",
        f"task       {ds.spec.op} mod {ds.p}, alpha={ds.spec.train_frac}, xi={ds.spec.corrupt_frac}"
        f" ({ds.n_train} train, {ds.n_corrupted} corrupted)",
        f"model      {_describe(a.model)}",
        f"phase      {a.phase.phase}: {a.phase.reason}",
        "",
        *_accuracy_lines(a),
        "",
        f"IPR        mean {a.ipr.mean:.3f} at {a.ipr.site} (r={a.ipr.r:g}, {a.ipr.convention};"
        f" random level {a.ipr.reference_random:.3f}, periodic level"
        f" {a.ipr.reference_periodic:.3f})",
        *(f"           mean {r.mean:.3f} at {name}" for name, r in a.site_ipr.items()
          if name != a.ipr.site),
        f"neurons    {a.neurons.generalizing} {high}, {a.neurons.memorizing} {low},"
        f" {a.neurons.dead} dead (threshold {a.neurons.threshold:.3f}, {a.neurons.method})",
    ]
    if a.evidence is not None:
        basis = "pruning" if a.evidence.basis == "causal" else "IPR only"
        lines.append(f"           names from {basis}: {a.evidence.reason}")
    lines += ["", *_pruning_lines(a)]
    if a.batchnorm is not None:
        b = a.batchnorm
        lines += [
            "",
            f"batchnorm  corr(|gamma|, IPR): Pearson {b.pearson:.3f}, Spearman {b.spearman:.3f};"
            f" mean |gamma| {high} {b.gamma_abs_generalizing:.4f},"
            f" {low} {b.gamma_abs_memorizing:.4f}",
        ]
    elif (note := _note(a, "BatchNorm factors:")) is not None:
        lines += ["", f"batchnorm  none: {note}"]
    fr = a.frequencies
    lines += ["", f"frequency  {int(fr.periodic().sum())} of {fr.key_freq.numel()} {fr.site} "
              "neurons have a key frequency explaining >= 50% of their activation variance"
              f" (mean {float(fr.frac_explained.nanmean()):.2f})"]
    if (note := _note(a, "Weight Fourier phases:")) is not None:
        lines.append(f"           weight Fourier phases: {note}")
    lg = a.logits
    if lg.index.numel():
        lines += [
            "",
            f"logits     corrupted label beats true label on {_pct(lg.frac_corrupted_wins).strip()}"
            f" of {lg.index.numel()} corrupted examples",
        ]
    if a.examples is not None:
        lines += ["", *examples_lines(a.examples)]
        if a.example_dynamics is not None:
            lines += example_dynamics_lines(a.example_dynamics)
    if a.dynamics is not None:
        lines += ["", *_dynamics_lines(a)]
    lines += _progress_lines(a)
    known = ("BatchNorm factors:", "Weight Fourier phases:", "Progress measures:")
    lines += [f"note       {n}" for n in a.notes if not n.startswith(known)]
    return "\n".join(lines)


def _dynamics_lines(a: Any) -> list[str]:
    d = a.dynamics
    assert d is not None
    corrupted = a.has_corrupted
    delay = "" if d.delay is None else f" ({d.delay:+d} steps)"
    peak = "" if d.test_peak.value is None else f"; test peak {_pct(d.test_peak.value).strip()}"
    fit = "memorized" if corrupted else "fit train"
    unlearned = f" unlearned {d.unlearning.describe()}," if corrupted else ""
    lines = [f"dynamics   {fit} {d.memorization.describe()}, grokked "
             f"{d.grokking.describe()}{delay},{unlearned} forgot {d.forgetting.describe()}{peak}"
             + ("" if d.test_peak.step is None else f" at step {d.test_peak.step}")]
    unknown = [(name, e) for name, e in d.events().items() if e.unknown
               and (corrupted or name != "unlearning")]
    reasons = dict.fromkeys(str(e.reason) for _, e in unknown)  # each reason once
    lines += [f"           unknown because {r}" for r in reasons]
    n = d.neurons
    if n is not None:
        lines.append(f"           periodic {n.site} neurons: "
                     f"{_pct(n.periodic_fraction[0]).strip()} at step {n.steps[0]} -> "
                     f"{_pct(n.periodic_fraction[-1]).strip()} at step {n.steps[-1]}")
        if n.fate is not None:
            c = n.fate.counts()
            low = fate_name(a)
            lines.append(f"           of {c['cohort']} {low} at step {n.fate.step}:"
                         f" {c['pruned']} faded out (norm under 10% of the median),"
                         f" {c['memorizing']} still {low}, {c['periodic']} periodic at step"
                         f" {n.fate.final_step}")
    return lines


def fate_name(a: Any) -> str:
    """What the dynamics' cohort of low-IPR neurons is called: "memorizing" only where the
    final classes carry that name on causal evidence, "non-periodic" otherwise."""
    return a.class_names[1]


def _progress_lines(a: Any) -> list[str]:
    m = a.progress
    if m is None:
        note = _note(a, "Progress measures:")
        return [] if note is None else ["", f"progress   none: {note}"]
    freqs = ", ".join(map(str, m.key_freqs)) or "none"
    where = ("restricted (MLP, test set)", "excluded (MLP, train set)") if m.definition == "mlp" \
        else ("restricted", "excluded")
    lines = ["", f"progress   key frequencies {freqs}; train-set {m.loss} loss {m.train_loss:.3g},"
             f" {where[0]} {m.restricted_loss:.3g}, {where[1]} {m.excluded_loss:.3g}; test"
             f" {m.test_loss:.3g}"]
    if a.progress_curves is not None:
        ph = a.progress_curves.phases
        spans = [f"{name} {'n/a' if v is None else f'{v[0]:g}-{v[1]:g}'}" for name, v in
                 (("memorization", ph.memorization), ("circuit formation",
                  ph.circuit_formation), ("cleanup", ph.cleanup))]
        lines.append("           Nanda's phases (steps): " + ", ".join(spans))
    return lines


def _describe(model: nn.Module) -> str:
    cfg = model.cfg
    family = family_name(model)
    if family == "transformer":
        return (f"transformer d_model={cfg.d_model} heads={cfg.n_heads} d_mlp={cfg.d_mlp}"
                f" layers={cfg.n_layers} act={cfg.act} norm={cfg.norm}")
    if family == LENS_FAMILY:
        return (f"TransformerLens {type(model.model).__name__} d_model={cfg.d_model}"
                f" heads={cfg.n_heads}"
                f" d_mlp={cfg.d_mlp} layers={cfg.n_layers} act={cfg.act} norm={cfg.norm}"
                f" {cfg.attention_dir} tokens={cfg.tokens}")
    return f"{family} width={cfg.width} act={cfg.act} norm={cfg.norm}"
