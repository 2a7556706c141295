"""mechmem on TransformerLens's own models: analyzers, converters and files (real package)."""

import json
import warnings

import pytest
import torch

tl = pytest.importorskip("transformer_lens")

from mechmem.interop import major_version  # noqa: E402

if major_version() >= 4:
    pytest.skip("TransformerLens 3.x's HookedTransformer (tests/test_interop_tl4.py: 4.x)",
                allow_module_level=True)

import mechmem  # noqa: E402
from mechmem import HookedTransformer, TransformerConfig, make_dataset  # noqa: E402
from mechmem.analysis import ablate, accuracies, pruning_curves  # noqa: E402
from mechmem.analysis._common import single_thread  # noqa: E402
from mechmem.cli import main  # noqa: E402
from mechmem.interop import (  # noqa: E402
    TransformerLensModel,
    dataset_from_split,
    from_transformer_lens,
    load_transformer_lens,
    save_transformer_lens,
    to_transformer_lens,
)
from mechmem.report import render_report  # noqa: E402

P = 23
# TransformerLens hooks mechmem's transformer lacks, each explained in docs/transformer-lens.md.
TL_ONLY = {"unembed.hook_in", "unembed.hook_out", "blocks.0.attn.hook_result",
           "blocks.0.hook_attn_in", "blocks.0.hook_q_input", "blocks.0.hook_k_input",
           "blocks.0.hook_v_input", "blocks.0.hook_mlp_in"}


def _hooked(cfg):
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="HookedTransformer is deprecated",
                                category=DeprecationWarning)
        return tl.HookedTransformer(cfg)


@pytest.fixture(scope="module")
def demo():
    """TransformerLens's grokking demo scaled down (p 23, d_model 32), trained for real:
    tokens `a b =`, causal attention, no LayerNorm, biases frozen at 0, full-batch AdamW."""
    cfg = tl.HookedTransformerConfig(
        n_layers=1, n_heads=4, d_model=32, d_head=8, d_mlp=64, act_fn="relu",
        normalization_type=None, d_vocab=P + 1, d_vocab_out=P, n_ctx=3, device="cpu")
    with torch.random.fork_rng(), single_thread():
        torch.manual_seed(999)
        model = _hooked(cfg)
        for name, param in model.named_parameters():
            if "b_" in name:
                param.requires_grad = False
        gen = torch.Generator().manual_seed(598)
        train_indices = torch.randperm(P * P, generator=gen)[: int(P * P * 0.6)]
        ds = dataset_from_split(train_indices, P)
        opt = torch.optim.AdamW([q for q in model.parameters() if q.requires_grad], lr=3e-3,
                                weight_decay=1.0, betas=(0.9, 0.98))
        x, y = ds.model_inputs(ds.train_pairs), ds.train_labels
        for _ in range(150):
            loss = torch.nn.functional.cross_entropy(model(x)[:, -1].double(), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model, ds, train_indices


@pytest.fixture(scope="module")
def analysis(demo):
    model, ds, _ = demo
    with single_thread():
        return mechmem.analyze(model, ds)


def test_analyze_a_transformer_lens_model(demo, analysis):
    model, ds, _ = demo
    a = analysis
    assert a.family == "transformer-lens" and isinstance(a.model, TransformerLensModel)
    assert a.model.model is model  # wrapped, not copied
    # Oracle: the demo's own read-out, argmax of the last position's logits.
    with torch.no_grad():
        pred = model(ds.model_inputs())[:, -1].argmax(-1)
    assert a.accuracy.test == pytest.approx(float((pred == ds.labels)[ds.test_idx].double().mean()))
    assert a.accuracy.train == pytest.approx(
        float((pred[ds.train_idx] == ds.train_labels).double().mean()))
    assert a.accuracy.train > 0.9  # it trained
    # The embed site is W_E over the p residue tokens, the `=` row left out.
    embed = mechmem.analysis.ipr_scores(a.model, "add", site="embed")
    assert embed.combined.shape == (32,) and a.site_ipr["embed"].mean == embed.mean
    site = a.model.neuron_sites()[0]
    assert torch.equal(site.inputs[0], model.W_E.detach()[:P].T)
    # Key frequencies come from TransformerLens's own hook_post at the `=` position.
    _, cache = model.run_with_cache(ds.model_inputs(), names_filter="blocks.0.mlp.hook_post")
    acts = cache["blocks.0.mlp.hook_post"][:, -1]
    dead = acts.double().std(0) == 0
    assert torch.equal(a.frequencies.dead, dead) and a.frequencies.key_freq.shape == (64,)
    assert a.neurons.generalizing + a.neurons.memorizing + a.neurons.dead == 64
    assert any("Weight Fourier phases" in n for n in a.notes) and a.fourier is None
    assert json.loads(json.dumps(a.to_json_dict()))["family"] == "transformer-lens"
    assert "TransformerLens HookedTransformer d_model=32" in a.summary()


def test_progress_measures_of_a_transformer_lens_model(demo, analysis):
    # Nanda's measures read the demo's own embedding and its last-position logits, in its
    # cross-entropy; the train loss is checked against the demo's read-out.
    model, ds, _ = demo
    m = analysis.progress
    assert m is not None and m.loss == "ce"
    with torch.no_grad():
        logits = model(ds.model_inputs(ds.train_pairs))[:, -1].double()
    want = torch.nn.functional.cross_entropy(logits, ds.train_labels)
    assert m.train_loss == pytest.approx(float(want), rel=1e-6)
    from mechmem.analysis.progress import key_frequencies
    assert m.key_freqs == key_frequencies(model.W_E.detach()[:P].double(), "add")[0]
    assert "progress" in analysis.to_json_dict()


def test_pruning_fast_path_matches_transformer_lens_hooks(demo, analysis):
    # The fast path (per-neuron logit contributions read off the site) against one forward
    # pass per point through TransformerLens's own hooks.
    a = analysis
    with single_thread():
        forward = pruning_curves(a.model, a.dataset, a.ipr, method="forward")
    assert a.pruning.method == "fast"
    for order in ("ipr_ascending", "random"):
        fast, slow = a.pruning.curves[order], forward.curves[order]
        assert torch.equal(fast.test, slow.test) and torch.equal(fast.train, slow.train)


def test_ablation_goes_through_transformer_lens_hooks(demo, analysis):
    model, ds, _ = demo
    tlm = analysis.model
    inputs = ds.model_inputs()

    def zero(x, hook):
        x[..., :10] = 0.0
        return x

    with torch.no_grad():
        expected = model.run_with_hooks(inputs, fwd_hooks=[("blocks.0.mlp.hook_post", zero)])
        with ablate(tlm, list(range(10))):
            assert tlm.list_hooks() == {"blocks.0.mlp.hook_post": 1}
            got = tlm(inputs)
    assert torch.allclose(got, expected[:, -1, :P])
    assert tlm.list_hooks() == {} and not any(hp.fwd_hooks for hp in model.hook_dict.values())
    with pytest.raises(ValueError, match="reads 3 tokens per example"):
        accuracies(tlm, make_dataset(p=P, train_frac=0.5))


def test_dataset_format_must_match_the_model(demo):
    model, _, _ = demo
    with pytest.raises(ValueError, match="reads the 'equals' token format but the dataset's "
                                         "tokens are 'operands'"):
        mechmem.analyze(model, make_dataset(p=P, train_frac=0.5))


def test_report_of_a_transformer_lens_model(analysis, tmp_path):
    page = render_report(analysis)
    assert "Weight Fourier phases" in page and "transformer-lens" in page
    assert analysis.to_html(tmp_path / "r.html").stat().st_size > 0


@pytest.mark.parametrize("settings", [
    {"init": "paper"},
    {"init": "gpt2", "norm": "layernorm", "bias": True, "act": "gelu", "n_layers": 2},
])
def test_converters_both_ways(settings):
    model = HookedTransformer(TransformerConfig(p=11, d_model=16, n_heads=2, d_mlp=24,
                                                **settings), seed=3)
    if settings.get("bias"):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.rsplit(".", 1)[-1].startswith("b"):
                    param.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    pairs = make_dataset(p=11, train_frac=0.5).pairs
    tl_model = to_transformer_lens(model)
    assert tl_model.cfg.attn_scale == pytest.approx(model.cfg.attn_scale)
    with torch.no_grad():
        mine, cache = model.run_with_cache(pairs)
        theirs, tl_cache = tl_model.run_with_cache(pairs)
    assert torch.allclose(mine, theirs[:, -1], atol=1e-5)
    # Every mechmem hook is a TransformerLens hook of that name, holding the same activations.
    assert set(model.hook_dict) <= set(tl_model.hook_dict)
    only = {n.replace("blocks.1.", "blocks.0.") for n in set(tl_model.hook_dict) - set(
        model.hook_dict)}
    assert only == TL_ONLY
    for name in model.hook_dict:
        assert torch.allclose(cache[name], tl_cache[name], atol=1e-5), name
    back = from_transformer_lens(tl_model)
    assert back.cfg == model.cfg
    for name, value in model.state_dict().items():
        assert torch.allclose(value, back.state_dict()[name], atol=1e-6), name
    with torch.no_grad():
        assert torch.allclose(back(pairs), mine, atol=1e-5)


def test_from_transformer_lens_refuses_other_architectures(demo):
    model, _, _ = demo
    with pytest.raises(ValueError, match="n_ctx=3, d_vocab=24, d_vocab_out=23 and causal"):
        from_transformer_lens(model)
    cfg = tl.HookedTransformerConfig(n_layers=1, d_model=16, d_head=8, n_heads=2, d_mlp=16,
                                     d_vocab=7, n_ctx=2, attention_dir="bidirectional",
                                     act_fn="silu", normalization_type=None, device="cpu")
    with pytest.raises(ValueError, match="has no act_fn='silu'"):
        from_transformer_lens(_hooked(cfg))


def _demo_file(path, model, train_indices, config):
    torch.save({"model": model.state_dict(), "config": config, "train_indices": train_indices,
                "train_losses": [2.0, 1.0], "test_losses": [2.5, 2.4]}, path)
    return path


def test_plain_data_files_open_and_analyze(demo, tmp_path, capsys):
    model, ds, train_indices = demo
    saved = save_transformer_lens(model, tmp_path / "plain.pt", dataset=ds)
    run = load_transformer_lens(saved)
    assert torch.equal(run.dataset.train_idx, ds.train_idx)
    with torch.no_grad():
        assert torch.equal(run.model(ds.model_inputs()), model(ds.model_inputs()))
    with pytest.raises(FileExistsError):
        save_transformer_lens(model, saved)
    # TransformerLens's own to_dict() (numpy attn_scale, torch dtype) opens safely too.
    demo_plain = _demo_file(tmp_path / "cfg-dict.pth", model, train_indices,
                            dict(model.cfg.to_dict()))
    assert main(["analyze", str(demo_plain), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["family"] == "transformer-lens" and out["name"] == "cfg-dict"
    assert main(["report", str(demo_plain)]) == 0
    assert (tmp_path / "cfg-dict.html").exists()
    bare = save_transformer_lens(model, tmp_path / "bare.pt")  # no split recorded
    assert main(["analyze", str(bare)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds no dataset or train_indices" in err
    assert mechmem.analyze(load_transformer_lens(bare), ds).accuracy.test == pytest.approx(
        mechmem.analyze(model, ds).accuracy.test)


def test_demo_checkpoints_are_snapshots_with_progress_curves(demo, tmp_path, capsys):
    # The demo's "checkpoints" (state_dicts) at "checkpoint_epochs" become the run's weight
    # snapshots: the progress measures are drawn over them, each point measured on its weights.
    model, ds, train_indices = demo
    with torch.random.fork_rng():
        torch.manual_seed(5)
        fresh = _hooked(model.cfg)
    path = tmp_path / "with-checkpoints.pth"
    payload = {"model": model.state_dict(), "config": dict(model.cfg.to_dict()),
               "train_indices": train_indices, "train_losses": [2.0, 1.0],
               "test_losses": [2.5, 2.4],
               "checkpoints": [fresh.state_dict(), model.state_dict()],
               "checkpoint_epochs": [0, 150]}
    torch.save(payload, path)
    run = load_transformer_lens(path)
    assert run.snapshots["step"].tolist() == [0, 150]
    a = mechmem.analyze(run)
    curves = a.progress_curves
    assert curves is not None and curves.steps.tolist() == [0.0, 150.0]
    assert float(curves.train_loss[-1]) == pytest.approx(a.progress.train_loss, rel=1e-9)
    with torch.no_grad():
        logits = fresh.eval()(ds.model_inputs(ds.train_pairs))[:, -1].double()
    want = torch.nn.functional.cross_entropy(logits, ds.train_labels)
    assert float(curves.train_loss[0]) == pytest.approx(float(want), rel=1e-6)
    assert 'id="fig-progress"' in render_report(a)
    torch.save(dict(payload, checkpoint_epochs=[0]), tmp_path / "bad.pth")
    assert main(["analyze", str(tmp_path / "bad.pth")]) == 2
    assert "must be lists of state_dicts and of steps, of one length" in capsys.readouterr().err


def test_pickled_transformer_lens_files_are_refused_unless_trusted(demo, tmp_path, capsys):
    model, ds, train_indices = demo
    pickled = _demo_file(tmp_path / "grokking_demo.pth", model, train_indices, model.cfg)
    with pytest.raises(ValueError, match="pickles TransformerLens's HookedTransformerConfig "
                                         "object.*trust_pickled_code=True"):
        load_transformer_lens(pickled)
    assert main(["analyze", str(pickled)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--trust-pickled-code" in err
    run = load_transformer_lens(pickled, trust_pickled_code=True)
    assert run.history["train_loss"] == [2.0, 1.0]
    assert torch.equal(run.dataset.train_idx, ds.train_idx)
    assert main(["analyze", str(pickled), "--trust-pickled-code"]) == 0
    assert "TransformerLens HookedTransformer" in capsys.readouterr().out


def test_hostile_pickles_stay_refused_with_the_trust_flag(tmp_path):
    import os  # noqa: F401  (named by the pickle below)

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    path = tmp_path / "evil.pth"
    torch.save({"model": {}, "config": Evil()}, path)
    with pytest.raises(ValueError, match="refused to load"):
        load_transformer_lens(path, trust_pickled_code=True)
    assert not (tmp_path / "pwned").exists()


def test_the_doc_runs_on_a_notebook_model(demo, tmp_path, monkeypatch):
    import re
    from pathlib import Path

    model, _, train_indices = demo
    text = (Path(__file__).resolve().parent.parent / "docs" / "transformer-lens.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    blocks = [b for b in blocks if "boot_native" not in b]  # 4.x's: test_interop_tl4.py
    assert len(blocks) == 3
    monkeypatch.chdir(tmp_path)
    namespace = {"model": model, "p": P, "train_indices": train_indices}  # the notebook's
    with single_thread():
        for block in blocks:
            exec(compile(block, "docs/transformer-lens.md", "exec"), namespace)
    assert (tmp_path / "grokking.html").exists() and (tmp_path / "grokking.pt").exists()
    assert namespace["back"].cfg == namespace["mine"].cfg


def test_transformer_lens_4_files_open_on_3(capsys):
    # A file written by TransformerLens 4.3 (a boot_native bridge's module-named state dict and
    # its config as plain data) opens on 3.9 as a HookedTransformer with the bridge's logits.
    raw = torch.load("tests/data/transformer_lens_4_3.pt", weights_only=True)
    assert "blocks.0.attn.q.weight" in raw["model"]
    run = load_transformer_lens("tests/data/transformer_lens_4_3.pt")
    assert type(run.model).__name__ == "HookedTransformer"
    with torch.no_grad():
        logits = run.model(run.dataset.model_inputs())[:, -1]
    assert torch.allclose(logits, raw["logits"], atol=1e-5)
    assert main(["analyze", "tests/data/transformer_lens_4_3.pt"]) == 0
    assert "TransformerLens HookedTransformer" in capsys.readouterr().out
