"""TransformerLens's grokking demo against mechmem: the demo's own progress measures as an
oracle for `definition="mlp"`, and a demo file without an accuracy history read as unknown."""

import copy
import json
import warnings

import pytest
import torch

tl = pytest.importorskip("transformer_lens")

from mechmem.analysis._common import single_thread  # noqa: E402
from mechmem.analysis.progress import progress_curves, progress_measures  # noqa: E402
from mechmem.cli import main  # noqa: E402
from mechmem.interop import dataset_from_split  # noqa: E402
from mechmem.interop._adapter import adapt_model  # noqa: E402

P = 23
KEY_FREQS = (1, 4, 9)


@pytest.fixture(scope="module")
def demo():
    """The demo's set-up at p 23 (tokens `a b =`, biases frozen at 0, full-batch AdamW), with
    its dataset and split built here as the demo builds them."""
    cfg = tl.HookedTransformerConfig(
        n_layers=1, n_heads=4, d_model=32, d_head=8, d_mlp=64, act_fn="relu",
        normalization_type=None, d_vocab=P + 1, d_vocab_out=P, n_ctx=3, device="cpu")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        with torch.random.fork_rng():
            torch.manual_seed(999)
            model = tl.HookedTransformer(cfg)
    for name, param in model.named_parameters():
        if "b_" in name:
            param.requires_grad = False
    a = torch.arange(P).repeat_interleave(P)
    b = torch.arange(P).repeat(P)
    dataset = torch.stack([a, b, torch.full_like(a, P)], dim=1)
    labels = (a + b) % P
    perm = torch.randperm(P * P, generator=torch.Generator().manual_seed(598))
    train_indices, test_indices = perm[: int(P * P * 0.6)], perm[int(P * P * 0.6):]
    opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=3e-3,
                            weight_decay=1.0, betas=(0.9, 0.98))
    snapshots = []
    with single_thread():
        for step in range(200):
            if step % 100 == 0:
                snapshots.append({k: v.detach().clone() for k, v in model.state_dict().items()})
            logits = model(dataset[train_indices])[:, -1].double()
            loss = torch.nn.functional.cross_entropy(logits, labels[train_indices])
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model, dataset, labels, train_indices, test_indices, snapshots


def demo_loss(logits, labels):
    """The demo's loss_fn: cross-entropy in float64."""
    log_probs = logits.to(torch.float64).log_softmax(dim=-1)
    return float(-log_probs.gather(dim=-1, index=labels[:, None])[:, 0].mean())


def demo_measures(model, dataset, labels, train_indices, test_indices):
    """The demo's get_restricted_loss and get_excluded_loss, written out here: the MLP
    activations at the last position projected on cos/sin(w (a + b)) of each key frequency,
    normalized over all pairs."""
    with torch.no_grad():
        logits, cache = model.run_with_cache(dataset)
    logits = logits[:, -1, :]
    acts = cache["post", 0, "mlp"][:, -1, :]
    a = torch.arange(P)[:, None]
    b = torch.arange(P)[None, :]
    key = torch.zeros_like(acts)
    for freq in KEY_FREQS:
        for wave in (torch.cos, torch.sin):
            vec = wave(freq * 2 * torch.pi / P * (a + b))
            vec = (vec / vec.norm()).reshape(-1, 1)
            key += (acts * vec).sum(dim=0) * vec
    W_out, W_U = model.blocks[0].mlp.W_out.detach(), model.unembed.W_U.detach()
    restricted = (acts.mean(dim=0) + key) @ W_out @ W_U
    restricted += logits.mean(dim=0, keepdim=True) - restricted.mean(dim=0, keepdim=True)
    excluded = ((acts - key) @ W_out + cache["resid_mid", 0][:, -1, :]) @ W_U
    return (demo_loss(restricted[test_indices], labels[test_indices]),
            demo_loss(excluded[train_indices], labels[train_indices]))


def test_mlp_definition_is_the_demos(demo):
    model, dataset, labels, train_indices, test_indices, _ = demo
    ds = dataset_from_split(train_indices, P)
    want_restricted, want_excluded = demo_measures(model, dataset, labels, train_indices,
                                                   test_indices)
    m = progress_measures(model, ds, loss="ce", key_freqs=KEY_FREQS, definition="mlp")
    assert m.definition == "mlp"
    assert m.restricted_loss == pytest.approx(want_restricted, rel=1e-5)
    assert m.excluded_loss == pytest.approx(want_excluded, rel=1e-5)
    # mechmem's own definition restricts the logits on the training set: another number
    own = progress_measures(model, ds, loss="ce", key_freqs=KEY_FREQS)
    assert own.definition == "logits"
    assert abs(own.restricted_loss - want_restricted) > 1e-3 * want_restricted
    assert own.train_loss == pytest.approx(m.train_loss) and own.test_loss == m.test_loss


def test_mlp_definition_over_snapshots(demo):
    model, dataset, labels, train_indices, test_indices, snapshots = demo
    ds = dataset_from_split(train_indices, P)
    wrapped = adapt_model(model)
    names = [k for k, _ in wrapped.named_parameters()]
    stacked = {"step": torch.tensor([0.0, 100.0])}
    for k in names:
        stacked[k] = torch.stack([s[k.removeprefix("model.")] for s in snapshots])
    curves = progress_curves(wrapped, ds, stacked, loss="ce", key_freqs=KEY_FREQS,
                             definition="mlp")
    first = copy.deepcopy(model)
    first.load_state_dict(snapshots[0])
    first.eval()
    want = demo_measures(first, dataset, labels, train_indices, test_indices)
    assert float(curves.restricted_loss[0]) == pytest.approx(want[0], rel=1e-5)
    assert float(curves.excluded_loss[0]) == pytest.approx(want[1], rel=1e-5)
    with pytest.raises(ValueError, match="`definition` must be one of logits, mlp, got 'x'"):
        progress_measures(model, ds, loss="ce", definition="x")


def test_a_demo_file_without_accuracies_is_unknown_not_never(demo, tmp_path, capsys):
    model, _, _, train_indices, _, _ = demo
    path = tmp_path / "grokking_demo.pth"
    torch.save({"model": model.state_dict(), "config": model.cfg,
                "train_indices": train_indices, "train_losses": [2.0, 1.0],
                "test_losses": [2.5, 2.4]}, path)
    assert main(["info", str(path)]) == 2
    assert "--trust-pickled-code" in capsys.readouterr().err
    assert main(["info", str(path), "--trust-pickled-code"]) == 0
    out = capsys.readouterr().out
    assert "TransformerLens HookedTransformer d_model=32" in out and "2 evaluations" in out
    assert main(["analyze", str(path), "--trust-pickled-code"]) == 0
    text = capsys.readouterr().out
    assert "grokked unknown" in text and "grokked never" not in text
    assert "unknown because the training history records no test_acc" in text
    assert main(["analyze", str(path), "--trust-pickled-code", "--json"]) == 0
    dynamics = json.loads(capsys.readouterr().out)["dynamics"]
    assert dynamics["grokking"]["status"] == "unknown"
    assert dynamics["memorization"]["status"] == "unknown"
