"""What mechmem says about a run is true of that run: the phase of a run without corrupted labels,
neuron classes named "memorizing" only on causal evidence, unknown events never printed as
"never", and no caption about corrupted labels, unlearning or weight decay where there are none."""

import dataclasses
import html
import json
import re

import pytest
import torch

from mechmem import TrainConfig, analytic_solution, analyze, make_dataset, train
from mechmem.analysis import AccuracyResult, class_evidence, classify_phase
from mechmem.analysis.accuracy import accuracies
from mechmem.report import render_report

pytestmark = pytest.mark.usefixtures("one_thread")

# Tiny runs that reach their phase in a few seconds on one CPU thread (p 31, width 128).
BASE = {"p": 31, "width": 128, "train_frac": 0.7, "eval_every": 20, "snapshot_every": 100,
        "device": "cpu"}
RUNS = {
    "clean": {"corrupt_frac": 0.0, "weight_decay": 1.0, "steps": 600},
    "clean_wd0": {"corrupt_frac": 0.0, "weight_decay": 0.0, "steps": 200},
    "coexistence": {"corrupt_frac": 0.2, "weight_decay": 1.0, "steps": 600},
    "partial_inversion": {"corrupt_frac": 0.3, "weight_decay": 8.0, "steps": 800},
    "confusion": {"corrupt_frac": 0.3, "weight_decay": 15.0, "steps": 800},
    "memorization": {"corrupt_frac": 0.2, "weight_decay": 0.0, "steps": 600},
}
# Words a run without corrupted labels must never have said of it.
CORRUPTED_WORDS = re.compile(r"memoriz|\binver(sion|ted|ts?)\b|unlearn|corrupted", re.I)
# Sentences that say there is nothing corrupted are the ones allowed to name it.
NEGATION = re.compile(r"no corrupted|no label is corrupted|nothing memorized", re.I)


@pytest.fixture(scope="module")
def ckpts(one_thread):
    return {name: train(TrainConfig(**BASE, **kw, name=name)) for name, kw in RUNS.items()}


@pytest.fixture(scope="module")
def runs(ckpts):
    return {name: analyze(c) for name, c in ckpts.items()}


def page_text(a) -> str:
    """Everything the report page says in words: its text, its figures' trace names and
    annotations (the plotly.js bundle and the figure data left out)."""
    page = render_report(a)
    block = re.search(r'id="mechmem-figures">(.*?)</script>', page, flags=re.S)
    figures = json.loads(block.group(1))
    body = re.sub(r"<script.*?</script>|<style.*?</style>", " ", page, flags=re.S)
    words = [html.unescape(re.sub(r"<[^>]+>", " ", body))]
    for fig in figures.values():
        words += [str(t.get("name", "")) for t in fig["data"]]
        words += [str(n.get("text", "")) for n in fig["layout"].get("annotations", [])]
    return re.sub(r"\s+", " ", " . ".join(words))


def json_strings(x) -> list[str]:
    if isinstance(x, str):
        return [x]
    if isinstance(x, dict):
        return [s for v in x.values() for s in json_strings(v)]
    if isinstance(x, list):
        return [s for v in x for s in json_strings(v)]
    return []


def claims(text: str) -> list[str]:
    """The sentences and clauses of `text` that name corrupted labels without saying there
    are none."""
    parts = re.split(r"(?<=[.;:])\s|\n", text)
    return [p for p in parts if CORRUPTED_WORDS.search(p) and not NEGATION.search(p)]


@pytest.mark.parametrize("name", ["clean", "clean_wd0"])
def test_a_clean_run_is_never_said_to_hold_corrupted_labels(runs, name):
    a = runs[name]
    assert a.dataset.n_corrupted == 0
    assert a.phase.phase in ("generalization", "memorization", "forgetting", "confusion")
    if a.accuracy.test >= 0.9:
        assert a.phase.phase == "generalization" and "no corrupted labels" in a.phase.reason
    assert a.class_names == ("periodic", "non-periodic") and a.evidence.basis == "ipr"
    text = a.summary()
    # the summary's settings line says xi and the corrupted count, and nothing more
    body = "\n".join(line for line in text.splitlines() if not line.startswith("task"))
    assert claims(body) == [], claims(body)
    assert "n/a" not in text  # no empty columns or pruning rows
    assert "unlearned" not in text and "fit train step" in text
    page = page_text(a)
    page = page.replace("corrupt_frac", "")  # the settings table's key
    assert claims(page) == [], claims(page)
    out = json.loads(json.dumps(a.to_json_dict(), allow_nan=False))
    assert out["phase"] == a.phase.phase
    assert out["neurons"]["names"] == {"generalizing": "periodic", "memorizing": "non-periodic"}
    assert out["neurons"]["basis"] == "ipr" and out["neurons"]["memorized_accuracy"]["all"] is None
    strings = [s for s in json_strings({k: v for k, v in out.items() if k != "config"})]
    assert claims(" \n".join(strings)) == []


def test_weight_decay_is_named_only_where_there_is_some(runs):
    page0, page1 = page_text(runs["clean_wd0"]), page_text(runs["clean"])
    assert "pruned away by weight decay" not in page0
    assert "weight decay holds them in check" not in page0
    assert "no weight decay" in page0
    assert "weight decay holds them in check" in page1


def test_memorizing_neurons_are_named_on_the_causal_evidence(runs):
    a = runs["coexistence"]
    assert a.phase.phase == "coexistence"
    e = a.evidence
    assert e.basis == "causal" and a.class_names == ("generalizing", "memorizing")
    # The evidence, measured again here by zeroing the neurons' weights in a copy.
    model, ds, classes = a.model, a.dataset, a.neurons

    def memorized_without(mask):
        import copy

        m = copy.deepcopy(model)
        with torch.no_grad():
            m.U[mask] = 0
            m.V[mask] = 0
            m.W[:, mask] = 0
        return accuracies(m, ds).corrupted_memorized

    without_low = memorized_without(classes.memorizing_mask)
    without_high = memorized_without(classes.generalizing_mask)
    assert e.memorized_without_low == pytest.approx(without_low)
    assert e.memorized_without_high == pytest.approx(without_high)
    assert without_low < without_high
    assert e.memorized == pytest.approx(a.accuracy.corrupted_memorized) and e.memorized >= 0.9
    text = a.summary()
    assert f"{classes.memorizing} memorizing" in text and "names from pruning" in text
    page = page_text(a)
    assert "memorizing neurons" in page and "generalizing neurons" in page
    out = a.to_json_dict()["neurons"]
    assert out["basis"] == "causal"
    assert out["memorized_accuracy"]["without_low_ipr"] == pytest.approx(without_low)


def test_a_split_that_pruning_does_not_back_keeps_the_ipr_names(runs):
    a = runs["coexistence"]
    c = a.neurons
    # the same neurons with the classes swapped: zeroing the "low" class now spares memory
    swapped = dataclasses.replace(c, generalizing=c.memorizing, memorizing=c.generalizing,
                                  generalizing_mask=c.memorizing_mask,
                                  memorizing_mask=c.generalizing_mask)
    e = class_evidence(a.model, a.dataset, swapped)
    assert e.basis == "ipr" and (e.high, e.low) == ("periodic", "non-periodic")
    assert e.memorized_without_low > e.memorized_without_high
    assert "no more than the other" in e.reason


def test_nothing_memorized_keeps_the_ipr_names():
    ds = make_dataset(p=23, train_frac=0.5, corrupt_frac=0.3, seed=0)
    a = analyze(analytic_solution(p=23, width=40, seed=0), ds, threshold=0.5)
    assert a.phase.phase == "full_inversion"
    assert a.evidence.basis == "ipr" and "nothing memorized" in a.evidence.reason
    assert "memorizing" not in a.summary().split("names from")[0]


@pytest.fixture(scope="module")
def forgetting(ckpts):
    """The confusion run with a history in which test accuracy reached 95% and the weights
    then collapsed: the record of a forgotten run."""
    c = ckpts["confusion"]
    n = len(c.history["step"])
    history = dict(c.history)
    history["test_acc"] = [0.95] * (n // 2) + [0.1] * (n - n // 2)
    for k in [k for k in history if k.startswith("norm_")]:
        history[k] = [1.0] * (n // 2) + [0.01] * (n - n // 2)
    return analyze(dataclasses.replace(c, history=history))


@pytest.fixture(scope="module")
def full_inversion():
    ds = make_dataset(p=23, train_frac=0.5, corrupt_frac=0.3, seed=0)
    return analyze(analytic_solution(p=23, width=40, seed=0), ds)


@pytest.mark.parametrize("name", ["coexistence", "partial_inversion", "full_inversion",
                                  "memorization", "forgetting", "confusion", "clean"])
def test_every_phase_says_only_what_its_run_shows(runs, name, request):
    a = request.getfixturevalue(name) if name in ("forgetting", "full_inversion") else runs[name]
    assert a.phase.phase == ("generalization" if name == "clean" else name)
    e = a.evidence
    high, low = a.class_names
    text, page = a.summary(), page_text(a)
    out = json.loads(json.dumps(a.to_json_dict(), allow_nan=False))
    # the class names, everywhere the same, and "memorizing" only on the causal evidence
    assert out["neurons"]["names"] == {"generalizing": high, "memorizing": low}
    assert (low == "memorizing") == (e.basis == "causal")
    assert f"{a.neurons.memorizing} {low}" in text
    if e.basis != "causal":
        assert "memorizing" not in text and "memorizing" not in page
    # the headline tells the phase with this run's own numbers
    lead = page.split("Accuracies")[0]
    assert f"test {100 * a.accuracy.test:.1f}%" in lead
    # weight decay is a cause only where there is some
    if not a.config.get("weight_decay"):
        assert "by weight decay" not in page
    # events: "never" only where the record shows it, "unknown" where it cannot tell
    d = a.dynamics
    if d is not None:
        for event in (d.memorization, d.grokking, d.forgetting):
            assert event.status != "unknown"
        assert ("forgot step" in text) == (d.forgetting.step is not None)
        for name_, e_ in d.events().items():
            assert out["dynamics"][name_]["status"] == e_.status
    if name == "forgetting":
        assert d.forgetting.step is not None and "forgetting" in page
    if name == "full_inversion":
        assert "nothing memorized" in e.reason


@pytest.mark.parametrize("name", ["partial_inversion", "confusion", "memorization"])
def test_every_phase_names_its_classes_by_the_rule(runs, name):
    a = runs[name]
    assert a.phase.phase == name
    e = a.evidence
    causal = (e.memorized >= 1 / a.dataset.p + 0.1 and a.neurons.memorizing > 0
              and a.neurons.generalizing > 0 and e.memorized_without_low < e.memorized_without_high)
    assert (e.basis == "causal") == causal
    text, page = a.summary(), page_text(a)
    if not causal:  # "memorizing" appears nowhere as a class or a cohort name
        assert "memorizing" not in text and "memorizing" not in page
    else:
        assert f"{a.neurons.memorizing} memorizing" in text
    fate = a.dynamics.neurons.fate
    if fate is not None:
        assert f"of {fate.counts()['cohort']} {e.low} at step {fate.step}" in text


def test_forgetting_from_a_constructed_history(runs):
    a = runs["confusion"]  # both accuracies end below 90%
    n = len(a.history["step"])
    history = dict(a.history)
    history["test_acc"] = [0.95] * (n // 2) + [0.1] * (n - n // 2)
    for k in [k for k in history if k.startswith("norm_")]:
        history[k] = [1.0] * (n // 2) + [0.01] * (n - n // 2)
    phase = classify_phase(a.accuracy, a.dataset.spec.corrupt_frac, history)
    assert phase.phase == "forgetting"
    clean = dataclasses.replace(a.accuracy, n_corrupted=0, corrupted_memorized=float("nan"),
                                corrupted_true=float("nan"))
    assert classify_phase(clean, 0.0, history).phase == "forgetting"


@pytest.mark.parametrize(("train", "test", "xi", "corrupted", "phase"), [
    (1.00, 0.99, 0.0, 0, "generalization"),
    (0.85, 0.95, 0.0, 0, "generalization"),
    (0.99, 0.20, 0.0, 0, "memorization"),
    (0.30, 0.20, 0.0, 0, "confusion"),
    (1.00, 0.99, 0.3, 0, "generalization"),  # xi > 0 but no example corrupted
    (1.00, 0.99, 0.35, 40, "coexistence"),
    (0.80, 0.99, 0.35, 40, "partial_inversion"),
    (0.65, 0.99, 0.35, 40, "full_inversion"),
    (0.99, 0.20, 0.35, 40, "memorization"),
    (0.30, 0.20, 0.35, 40, "confusion"),
])
def test_phase_table(train, test, xi, corrupted, phase):
    acc = AccuracyResult(train=train, test=test, clean_train=train, corrupted_memorized=0.5,
                         corrupted_true=0.5, n_train=100, n_test=100, n_corrupted=corrupted)
    assert classify_phase(acc, xi).phase == phase


def test_notes_sit_in_their_own_sections(runs):
    a = runs["clean"]
    text = a.summary().splitlines()
    assert not any(line.startswith("note") for line in text)
    assert next(i for i, s in enumerate(text) if s.startswith("batchnorm  none:")) > 5
    assert text[-1].startswith("progress   none:")
    page = render_report(a)
    lead = page.split('<section id="summary">')[1].split("</section>")[0]
    assert "BatchNorm" not in lead and "Progress measures" not in lead
    assert page.count("which this model does not have") == 1  # the progress panel's note
    assert page.count("This model has no BatchNorm layer") == 1


def test_an_event_the_record_cannot_tell_is_unknown(ckpts):
    c = ckpts["coexistence"]
    history = {k: v for k, v in c.history.items() if k in ("step", "train_loss", "test_loss")}
    b = analyze(dataclasses.replace(c, history=history))
    d = b.dynamics
    assert d.grokking.status == "unknown" and d.memorization.status == "unknown"
    text = b.summary()
    assert "grokked unknown" in text and "never" not in text.split("dynamics")[1].split("\n")[0]
    assert "unknown because the training history records no train_acc" in text
    out = b.to_json_dict()["dynamics"]
    assert out["grokking"]["status"] == "unknown" and out["grokking"]["step"] is None
    assert "unknown: the training history records no test_acc" in b._repr_html_()
    assert ">never<" not in b._repr_html_()
    page = page_text(b)
    assert "memorization unknown: the training history records no train_acc" in page
    assert "grokking and forgetting unknown: the training history records no test_acc" in page
    assert "never" not in page

