"""Nanda et al.'s progress measures: the logit split on constructed logits, the key-frequency
finder on planted embeddings, the phase rule on constructed curves, and a real transformer run
(its curves against the trainer's own history)."""

import json
import math

import pytest
import torch
from torch import nn

from mechmem import TrainConfig, analyze, make_dataset, train
from mechmem.analysis.analyze import Analysis
from mechmem.analysis.progress import (
    ProgressCurves,
    decompose_logits,
    embedding_frequency_share,
    key_directions,
    key_frequencies,
    progress_curves,
    progress_measures,
)
from mechmem.analysis.progress_phases import NandaPhases, nanda_phases
from mechmem.models.families import weight_names
from mechmem.train.metrics import loss_value

pytestmark = pytest.mark.usefixtures("one_thread")

P = 23


def _wave_embedding(p: int, freqs: dict[int, float], d: int, noise: float, seed: int):
    """W_E (p, d) whose dimensions are cosines of the given frequencies (amplitude per
    frequency, random phases) plus Gaussian noise."""
    gen = torch.Generator().manual_seed(seed)
    r = torch.arange(p, dtype=torch.float64)
    cols = []
    for j in range(d):
        k = list(freqs)[j % len(freqs)]
        phase = float(torch.rand((), generator=gen, dtype=torch.float64)) * 2 * math.pi
        cols.append(freqs[k] * torch.cos(2 * math.pi * k * r / p + phase))
    return torch.stack(cols, 1) + noise * torch.randn(p, d, generator=gen, dtype=torch.float64)


def _trig_logits(ds, freqs: dict[int, float], const: float = 0.1):
    """Logits that are exactly const + sum_k A_k cos(w_k (a + b - c) + phase_k)."""
    a, b = ds.pairs[:, 0, None].double(), ds.pairs[:, 1, None].double()
    c = torch.arange(ds.p, dtype=torch.float64)[None, :]
    out = torch.full((ds.pairs.shape[0], ds.p), const, dtype=torch.float64)
    for i, (k, amp) in enumerate(freqs.items()):
        out = out + amp * torch.cos(2 * math.pi * k * (a + b - c) / ds.p + 0.7 * i)
    return out


class TableModel(nn.Module):
    """A model that answers from a fixed logits table over all pairs, with a token embedding:
    the measures' full path on logits whose decomposition is known."""

    def __init__(self, table, W_E, p):
        super().__init__()
        self.p = p
        self.table = nn.Parameter(table.float())
        self.W_E = nn.Parameter(W_E.float())

    def forward(self, pairs):
        return self.table[pairs[:, 0] * self.p + pairs[:, 1]]


# --- the logit split -------------------------------------------------------------------------


@pytest.mark.parametrize("op, p", [("add", 23), ("sub", 23), ("mul", 23), ("div", 23),
                                   ("sq_sum", 23)])
def test_the_three_parts_are_orthogonal_and_sum_to_the_logits(op, p):
    ds = make_dataset(op=op, p=p, train_frac=0.5)
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(ds.pairs.shape[0], p, generator=gen, dtype=torch.float64)
    parts = decompose_logits(logits, ds, [2, 5, 11])
    torch.testing.assert_close(parts.constant + parts.key + parts.rest, logits)
    for x, y in [(parts.constant, parts.key), (parts.constant, parts.rest),
                 (parts.key, parts.rest)]:
        assert (x * y).sum(0).abs().max() < 1e-9  # orthogonal over the pairs, per class c
    # restricted and excluded are the complements of each other around the constant
    torch.testing.assert_close(parts.restricted + parts.excluded, logits + parts.constant)
    # projections: splitting the key part again leaves it whole
    again = decompose_logits(parts.key, ds, [2, 5, 11])
    torch.testing.assert_close(again.key, parts.key)
    assert again.rest.abs().max() < 1e-9


def test_key_directions_are_orthonormal_and_span_the_expanded_trig_terms():
    ds = make_dataset(p=P)
    Q = key_directions(ds, [3, 4])
    assert Q.shape == (P * P, 4)
    torch.testing.assert_close(Q.T @ Q, torch.eye(4, dtype=torch.float64))
    assert Q.sum(0).abs().max() < 1e-9  # orthogonal to the constant
    # multiplication's period p - 1 is even: sin(pi s) vanishes at k = (p - 1) / 2
    assert key_directions(make_dataset(op="mul", p=P), [11]).shape[1] == 1


def test_logits_made_of_key_frequency_terms_are_all_restricted_and_none_excluded():
    ds = make_dataset(p=P, train_frac=0.5, corrupt_frac=0.2)
    freqs = {3: 1.0, 7: 0.5}
    logits = _trig_logits(ds, freqs)
    parts = decompose_logits(logits, ds, list(freqs))
    assert parts.rest.abs().max() < 1e-9
    torch.testing.assert_close(parts.restricted, logits)
    torch.testing.assert_close(parts.excluded, torch.full_like(logits, 0.1))
    # through the whole measure, with the key frequencies found from a planted embedding
    model = TableModel(logits, _wave_embedding(P, {3: 1.0, 7: 1.0}, 32, 0.05, 0), P)
    for loss in ("mse", "ce"):
        m = progress_measures(model, ds, loss=loss)
        assert m.key_freqs == (3, 7)
        rows, y = ds.train_idx, ds.train_labels
        full = float(loss_value(loss, logits[rows], y))
        constant = float(loss_value(loss, torch.full_like(logits[rows], 0.1), y))
        assert m.train_loss == pytest.approx(full, rel=1e-5)
        assert m.restricted_loss == pytest.approx(full, rel=1e-5)
        assert m.excluded_loss == pytest.approx(constant, rel=1e-5)
        test = float(loss_value(loss, logits[ds.test_idx], ds.test_labels))
        assert m.test_loss == pytest.approx(test, rel=1e-5)


def test_a_non_key_frequency_is_excluded_not_restricted():
    ds = make_dataset(p=P, train_frac=0.5)
    both = _trig_logits(ds, {3: 1.0, 8: 1.0})  # 0.1 + cos(w_3 (a+b-c)) + cos(w_8 (a+b-c) + 0.7)
    three = _trig_logits(ds, {3: 1.0}, const=0.0)
    parts = decompose_logits(both, ds, [3])
    torch.testing.assert_close(parts.key, three)
    torch.testing.assert_close(parts.rest, both - three - 0.1)
    torch.testing.assert_close(parts.excluded, both - three)


# --- the key-frequency finder ----------------------------------------------------------------


def test_the_finder_picks_the_planted_frequencies_and_nothing_from_noise():
    W_E = _wave_embedding(31, {2: 1.0, 9: 0.8, 13: 1.2}, 48, 0.2, seed=3)
    keys, share = key_frequencies(W_E, "add")
    assert keys == (2, 9, 13)
    assert share.shape == (16,) and share[0] == 0 and share.sum() == pytest.approx(1.0)
    noise = torch.randn(31, 48, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    assert key_frequencies(noise, "add")[0] == ()
    # exact waves: the other shares are rounding noise, whose ratios among themselves are huge
    exact = _wave_embedding(31, {2: 1.0, 9: 0.8, 13: 1.2}, 48, 0.0, seed=3)
    assert key_frequencies(exact, "add")[0] == (2, 9, 13)
    five = _wave_embedding(P, dict.fromkeys((1, 4, 5, 8, 10), 1.0), 40, 0.05, seed=5)
    assert key_frequencies(five, "add")[0] == (1, 4, 5, 8, 10)  # 5 of 11: the top half
    # the share is the same as a NumPy-free oracle: projections on cos and sin
    r = torch.arange(31, dtype=torch.float64)
    power = [((torch.cos(2 * math.pi * k * r / 31) @ W_E).square().sum()
              + (torch.sin(2 * math.pi * k * r / 31) @ W_E).square().sum()) for k in range(1, 16)]
    oracle = torch.stack(power) / torch.stack(power).sum()
    torch.testing.assert_close(embedding_frequency_share(W_E, "add")[1:], oracle)


def test_the_finder_reads_multiplication_in_discrete_logs():
    from mechmem.data import task_coordinates

    coords = task_coordinates("mul", P)
    log = coords.a.to(torch.float64)
    W_E = torch.stack([torch.cos(2 * math.pi * 4 * log / (P - 1) + j) for j in range(8)], 1)
    W_E[0] = 0.0  # residue 0 has no logarithm
    assert key_frequencies(W_E, "mul")[0] == (4,)


def test_bad_inputs_are_clear_errors():
    ds = make_dataset(p=P)
    with pytest.raises(ValueError, match="integers in 1..11"):
        key_directions(ds, [12])
    with pytest.raises(ValueError, match="`loss` must be one of mse, ce"):
        progress_measures(TableModel(torch.zeros(P * P, P), torch.zeros(P, 4), P), ds,
                          loss="l1")
    with pytest.raises(ValueError, match="no token embedding W_E"):
        progress_measures(nn.Linear(2, P), ds)
    with pytest.raises(ValueError, match="must be \\(pairs, p\\)"):
        decompose_logits(torch.zeros(5, P), ds, [1])
    with pytest.raises(ValueError, match="`gap` must be above 1"):
        key_frequencies(torch.zeros(P, 3), "add", gap=1.0)


# --- the phase rule --------------------------------------------------------------------------


def _f64(x):
    return torch.tensor(x, dtype=torch.float64)


def _curves(train, test, restricted=None, excluded=None):
    """Steps 0, 10, 20, ... and the four curves (restricted and excluded flat unless given)."""
    n = len(train)
    return (_f64([10.0 * i for i in range(n)]), _f64(train), _f64(test),
            _f64(restricted or [1.0] * n), _f64(excluded or [1.0] * n))


def test_phases_of_a_grokking_run_follow_the_rule():
    train = [1, 0.1, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4]
    test = [1, 1, 2, 2, 2, 2, 1.9, 1e-2, 1e-3, 1e-3, 1e-3]
    restricted = [1, 1, 1, 0.5, 0.2, 0.1, 0.05, 0.01, 1e-3, 1e-3, 1e-3]
    excluded = [1, 0.1, 1e-3, 0.1, 0.5, 1, 2, 3, 4, 4, 4]
    ph = nanda_phases(*_curves(train, test, restricted, excluded))
    late = nanda_phases(*_curves([1, 0.5, 0.3, 0.1, 0.1, 0.01, 0.01], [1] * 7))
    assert late.memorization == (0.0, 30.0)  # log fall 0 -> -2, half-way (<= -1) at step 30
    # train: log fall 0 -> -3 before cleanup, half of it (<= -1.5) first at step 20
    assert ph.memorization == (0.0, 20.0)
    # test: peak 2 at step 20, floor 1e-3; 10% down first at step 70, 90% at step 80
    assert ph.cleanup == (70.0, 80.0)
    assert ph.circuit_formation == (20.0, 70.0)
    assert ph.excluded_change == pytest.approx(3 / 1e-3)
    assert ph.restricted_change == pytest.approx(0.01 / 1)
    assert ph.notes == ()


def test_phases_that_cannot_be_located_say_why():
    flat = nanda_phases(*_curves([1, 0.1, 1e-3, 1e-3], [1, 1.5, 2, 2]))
    assert flat.cleanup is None and flat.circuit_formation is None
    assert flat.memorization == (0.0, 20.0)
    assert any("has not generalized" in n for n in flat.notes)
    assert any("no end to locate" in n for n in flat.notes)
    together = nanda_phases(*_curves([1, 1, 0.7, 1e-3, 1e-3], [1, 1, 0.5, 1e-3, 1e-3]))
    assert together.memorization is None and together.cleanup == (20.0, 30.0)
    assert any("before the test loss falls" in n for n in together.notes)
    overlap = nanda_phases(*_curves([1, 1, 1, 1e-4, 1e-5], [1, 1, 1, 1e-3, 1e-3]))
    assert overlap.memorization == (0.0, 30.0) and overlap.cleanup == (30.0, 30.0)
    assert overlap.circuit_formation is None and overlap.excluded_change is None
    assert any("overlap" in n for n in overlap.notes)
    assert "at least 3" in nanda_phases(*_curves([1, 0.1], [1, 0.1])).notes[0]
    nan = nanda_phases(*_curves([1, math.nan, 1], [1, 1, 1]))
    assert nan == NandaPhases(notes=nan.notes) and "diverged" in nan.notes[0]


# --- a real transformer run ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tf_run():
    config = TrainConfig(model="transformer", p=P, d_model=32, n_heads=4, width=64,
                         train_frac=0.6, corrupt_frac=0.2, weight_decay=1.0, lr=0.01,
                         steps=200, eval_every=50, snapshot_every=50, device="cpu")
    ckpt = train(config)
    return ckpt, analyze(ckpt)


def test_curves_match_the_trainers_history_and_the_final_model(tf_run):
    ckpt, a = tf_run
    curves = a.progress_curves
    assert isinstance(curves, ProgressCurves) and curves.unsnapshotted == ()
    assert curves.steps.tolist() == [0, 50, 100, 150, 200] == ckpt.history["step"]
    # the trainer measured the same train and test MSE at the same steps
    torch.testing.assert_close(curves.train_loss, torch.tensor(ckpt.history["train_loss"],
                                                               dtype=torch.float64),
                               rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(curves.test_loss, torch.tensor(ckpt.history["test_loss"],
                                                              dtype=torch.float64),
                               rtol=1e-4, atol=1e-7)
    final = a.progress
    assert curves.key_freqs == final.key_freqs and final.loss == "mse" == curves.loss
    for name in ("train_loss", "test_loss", "restricted_loss", "excluded_loss"):
        assert float(getattr(curves, name)[-1]) == pytest.approx(getattr(final, name),
                                                                 rel=1e-6)
    # key frequencies are the final embedding's, by the stated rule
    assert final.key_freqs == key_frequencies(ckpt.model.W_E.detach().double(), "add")[0]


def test_the_snapshot_curves_leave_the_model_alone_and_check_their_input(tf_run):
    ckpt, a = tf_run
    before = {k: v.clone() for k, v in ckpt.model.state_dict().items()}
    progress_curves(ckpt.model, ckpt.dataset, ckpt.snapshots, loss="ce")
    assert all(torch.equal(before[k], v) for k, v in ckpt.model.state_dict().items())
    bad = dict(ckpt.snapshots) | {"embed.W_E": ckpt.snapshots["embed.W_E"][:2]}
    with pytest.raises(ValueError, match="does not hold 5 tensors"):
        progress_curves(ckpt.model, ckpt.dataset, bad)
    with pytest.raises(ValueError, match="no 'step' entry"):
        progress_curves(ckpt.model, ckpt.dataset, {k: v for k, v in ckpt.snapshots.items()
                                                   if k != "step"})
    assert set(weight_names(ckpt.model)) <= set(ckpt.snapshots)


def test_analysis_json_and_summary_carry_the_progress(tf_run):
    _, a = tf_run
    j = json.loads(json.dumps(a.to_json_dict(), allow_nan=False))
    pr = j["progress"]
    assert pr["key_freqs"] == list(a.progress.key_freqs) and pr["loss"] == "mse"
    assert pr["restricted_loss"] == pytest.approx(a.progress.restricted_loss)
    assert len(pr["curves"]["excluded_loss"]) == 5
    assert set(pr["phases"]) == {"memorization", "circuit_formation", "cleanup",
                                 "excluded_change", "restricted_change", "notes"}
    assert "Nanda's phases" in a.summary()
    assert not any(n.startswith("Progress measures") for n in a.notes)


def test_mlp_families_have_no_progress_and_a_note():
    from mechmem import analytic_solution

    a = analyze(analytic_solution(p=P, width=12), make_dataset(p=P))
    assert isinstance(a, Analysis) and a.progress is None and a.progress_curves is None
    assert any(n.startswith("Progress measures") for n in a.notes)
    assert a.to_json_dict()["progress"] is None


# --- the report ------------------------------------------------------------------------------


def _constructed_curves():
    train = [1, 0.1, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-3, 1e-4, 1e-4, 1e-4]
    test = [1, 1, 2, 2, 2, 2, 1.9, 1e-2, 1e-3, 1e-3, 1e-3]
    steps, tr, te, re, ex = _curves(train, test)
    return ProgressCurves(steps=steps, train_loss=tr, test_loss=te, restricted_loss=re,
                          excluded_loss=ex, key_freqs=(3,), loss="mse",
                          phases=nanda_phases(steps, tr, te, re, ex))


def test_the_figure_shades_nandas_phases_and_marks_mechmems_stages():
    go = pytest.importorskip("plotly.graph_objects")
    from mechmem.analysis.dynamics import training_dynamics
    from mechmem.report._progress import _progress_spec

    curves = _constructed_curves()
    history = {"step": [0.0, 50.0, 100.0], "test_acc": [0.0, 0.5, 1.0],
               "train_acc": [0.1, 1.0, 1.0]}
    fig = _progress_spec(curves, training_dynamics(history, corrupt_frac=0.0, p=P))
    go.Figure(fig)  # plotly's own validation
    assert fig["layout"]["yaxis"]["type"] == "log"
    assert [t["name"].split()[0] for t in fig["data"]] == ["train", "test", "restricted",
                                                           "excluded"]
    assert fig["data"][1]["y"] == pytest.approx(curves.test_loss.tolist())
    rects = [(s["x0"], s["x1"]) for s in fig["layout"]["shapes"] if s["type"] == "rect"]
    assert rects == [(0.0, 20.0), (20.0, 70.0), (70.0, 80.0)]
    labels = [n["text"] for n in fig["layout"]["annotations"]]
    assert labels[:3] == ["memorization", "circuit formation", "cleanup"]
    assert "grokking" in labels  # test accuracy reaches 90% at step 100


def test_the_report_has_the_progress_panel_for_a_transformer(tf_run):
    pytest.importorskip("plotly")
    from mechmem.report import render_report

    _, a = tf_run
    page = render_report(a)
    assert 'id="fig-progress"' in page and "Progress measures (Nanda et al.)" in page
    assert "restricted loss" in page


def test_a_transformer_without_snapshots_has_end_measures_and_a_note_in_the_report():
    pytest.importorskip("plotly")
    from mechmem import HookedTransformer, TransformerConfig
    from mechmem.report import render_report

    model = HookedTransformer(TransformerConfig(p=P, d_model=16, n_heads=2, d_mlp=24), seed=0)
    a = analyze(model, make_dataset(p=P))
    assert a.progress is not None and a.progress_curves is None
    assert a.progress.key_freqs == ()  # a freshly drawn embedding has no key frequency
    # without key frequencies the restricted logits are the constant alone
    with torch.no_grad():
        logits = model.eval()(a.dataset.pairs).double()
    constant = logits.mean(0, keepdim=True).expand_as(logits)[a.dataset.train_idx]
    assert a.progress.restricted_loss == pytest.approx(
        float(loss_value("mse", constant, a.dataset.train_labels)), rel=1e-6)
    assert a.progress.excluded_loss == pytest.approx(a.progress.train_loss, rel=1e-9)
    page = render_report(a)
    assert 'id="missing-progress"' in page and "stored no weight snapshots" in page
