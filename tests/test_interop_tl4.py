"""mechmem on TransformerLens 4's TransformerBridge (`boot_native`): analysis, report, converters
and files (real package; runs in the TransformerLens 4 environment, `.ci/setup --tl4`)."""

import json

import pytest
import torch

tl = pytest.importorskip("transformer_lens")

from mechmem.interop import major_version  # noqa: E402

if major_version() < 4:
    pytest.skip("needs TransformerLens 4 (the second test environment: bash .ci/setup --tl4)",
                allow_module_level=True)

from transformer_lens.config import TransformerBridgeConfig  # noqa: E402
from transformer_lens.model_bridge import TransformerBridge  # noqa: E402
from transformer_lens.utilities.tl_checkpoint_conversion import (  # noqa: E402
    convert_tl_checkpoint,
)

import mechmem  # noqa: E402
from mechmem import HookedTransformer, TransformerConfig, make_dataset  # noqa: E402
from mechmem.analysis import ablate, pruning_curves  # noqa: E402
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
from mechmem.interop._lens import to_property_format  # noqa: E402
from mechmem.report import render_report  # noqa: E402

P = 23
DATA_3_9 = "tests/data/transformer_lens_3_9.pt"  # written by TransformerLens 3.9.0


@pytest.fixture(scope="module")
def demo():
    """The grokking demo's shape (1 layer, tokens `a b =`, d_vocab p + 1, causal attention, no
    LayerNorm) as TransformerLens 4 builds it, trained from scratch: 300 full-batch AdamW steps,
    with the bridge's state dict kept every 100 steps as the demo keeps its checkpoints."""
    cfg = TransformerBridgeConfig(
        n_layers=1, n_heads=4, d_model=32, d_head=8, d_mlp=64, act_fn="relu",
        normalization_type=None, d_vocab=P + 1, d_vocab_out=P, n_ctx=3, seed=999)
    with torch.random.fork_rng(), single_thread():
        model = TransformerBridge.boot_native(cfg)
        gen = torch.Generator().manual_seed(598)
        train_indices = torch.randperm(P * P, generator=gen)[: int(P * P * 0.8)]
        ds = dataset_from_split(train_indices, P)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1.0, betas=(0.9, 0.98))
        x, y = ds.model_inputs(ds.train_pairs), ds.train_labels
        checkpoints, epochs, losses = [], [], []
        for step in range(300):
            if step % 100 == 0:
                checkpoints.append({k: v.detach().clone() for k, v in model.state_dict().items()})
                epochs.append(step)
            loss = torch.nn.functional.cross_entropy(model(x)[:, -1].double(), y)
            losses.append(float(loss.detach()))
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    return model, ds, train_indices, (checkpoints, epochs, losses)


@pytest.fixture(scope="module")
def analysis(demo):
    model, ds, _, _ = demo
    with single_thread():
        return mechmem.analyze(model, ds)


def test_a_bridge_trained_from_scratch_is_analyzed_end_to_end(demo, analysis):
    model, ds, _, _ = demo
    a = analysis
    assert isinstance(a.model, TransformerLensModel) and a.model.model is model
    with torch.no_grad():
        pred = model(ds.model_inputs())[:, -1].argmax(-1)
    assert a.accuracy.test == pytest.approx(float((pred == ds.labels)[ds.test_idx].double().mean()))
    assert a.accuracy.train == pytest.approx(
        float((pred[ds.train_idx] == ds.train_labels).double().mean()))
    assert a.accuracy.train == 1.0 and a.accuracy.test > 0.9  # it learned the task
    assert a.phase.phase == ("coexistence" if ds.n_corrupted else "generalization")
    # Key frequencies from the bridge's hook_post (the 3.x name, an alias on the bridge).
    _, cache = model.run_with_cache(ds.model_inputs(), names_filter="blocks.0.mlp.hook_post")
    acts = cache["blocks.0.mlp.hook_post"][:, -1]
    assert torch.equal(a.frequencies.dead, acts.double().std(0) == 0)
    assert a.frequencies.key_freq.shape == (64,)
    assert a.neurons.generalizing + a.neurons.memorizing + a.neurons.dead == 64
    assert json.loads(json.dumps(a.to_json_dict()))["family"] == "transformer-lens"
    assert "TransformerLens TransformerBridge d_model=32" in a.summary()


def test_progress_measures_through_the_bridge(demo, analysis):
    model, ds, _, _ = demo
    m = analysis.progress
    assert m is not None and m.loss == "ce"
    with torch.no_grad():
        logits = model(ds.model_inputs(ds.train_pairs))[:, -1].double()
    want = torch.nn.functional.cross_entropy(logits, ds.train_labels)
    assert m.train_loss == pytest.approx(float(want), rel=1e-6)
    from mechmem.analysis.progress import key_frequencies
    assert m.key_freqs == key_frequencies(model.W_E.detach()[:P].double(), "add")[0]


def test_pruning_fast_path_matches_the_bridge_hooks(analysis):
    a = analysis
    with single_thread():
        forward = pruning_curves(a.model, a.dataset, a.ipr, method="forward")
    assert a.pruning.method == "fast"
    for order in ("ipr_ascending", "random"):
        fast, slow = a.pruning.curves[order], forward.curves[order]
        assert torch.equal(fast.test, slow.test) and torch.equal(fast.train, slow.train)


def test_ablation_goes_through_the_bridge_hooks(demo, analysis):
    model, ds, _, _ = demo
    tlm = analysis.model
    inputs = ds.model_inputs()

    def zero(x, hook):
        x[..., :10] = 0.0
        return x

    with torch.no_grad():
        expected = model.run_with_hooks(inputs, fwd_hooks=[("blocks.0.mlp.hook_post", zero)])
        with ablate(tlm, list(range(10))):
            assert tlm.list_hooks() == {"blocks.0.mlp.hook_post": 1}  # its alias counted once
            got = tlm(inputs)
    assert torch.allclose(got, expected[:, -1, :P])
    assert tlm.list_hooks() == {} and not any(hp.fwd_hooks for hp in model.hook_dict.values())


def test_report_of_a_bridge_model_and_of_its_file(demo, analysis, tmp_path, capsys):
    model, ds, _, _ = demo
    assert "transformer-lens" in render_report(analysis)
    saved = save_transformer_lens(model, tmp_path / "bridge.pt", dataset=ds)
    assert main(["report", str(saved)]) == 0
    assert (tmp_path / "bridge.html").stat().st_size > 0
    capsys.readouterr()
    assert main(["analyze", str(saved), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["family"] == "transformer-lens"


@pytest.mark.parametrize("settings", [
    {"init": "paper"},
    {"init": "gpt2", "norm": "layernorm", "bias": True, "act": "gelu", "n_layers": 2},
])
def test_converters_both_ways_on_4(settings):
    model = HookedTransformer(TransformerConfig(p=11, d_model=16, n_heads=2, d_mlp=24,
                                                **settings), seed=3)
    if settings.get("bias"):
        with torch.no_grad():
            for name, param in model.named_parameters():
                if name.rsplit(".", 1)[-1].startswith("b"):
                    param.normal_(0, 0.1, generator=torch.Generator().manual_seed(1))
    pairs = make_dataset(p=11, train_frac=0.5).pairs
    tl_model = to_transformer_lens(model)
    assert isinstance(tl_model, TransformerBridge)  # a 4.x model on 4.x
    with torch.no_grad():
        mine, cache = model.run_with_cache(pairs)
        theirs, tl_cache = tl_model.run_with_cache(pairs)
    assert torch.allclose(mine, theirs[:, -1], atol=1e-5)
    # Every mechmem hook is a hook of the bridge (its 3.x alias), holding the same activations;
    # but a boot_native bridge (4.3.0) fills attn.hook_attn_scores with the softmaxed pattern.
    assert set(model.hook_dict) <= set(tl_model.hook_dict)
    for name in model.hook_dict:
        if name.endswith("hook_attn_scores"):
            assert torch.equal(tl_cache[name], tl_cache[name.replace("attn_scores", "pattern")])
            continue
        assert torch.allclose(cache[name], tl_cache[name], atol=1e-5), name
    back = from_transformer_lens(tl_model)
    assert back.cfg == model.cfg
    for name, value in model.state_dict().items():
        assert torch.allclose(value, back.state_dict()[name], atol=1e-6), name
    with torch.no_grad():
        assert torch.allclose(back(pairs), mine, atol=1e-5)


def test_from_transformer_lens_refuses_other_bridges(demo):
    model, _, _, _ = demo
    with pytest.raises(ValueError, match="n_ctx=3, d_vocab=24, d_vocab_out=23 and causal"):
        from_transformer_lens(model)


def test_bridge_files_open_as_plain_data(demo, tmp_path):
    model, ds, train_indices, (checkpoints, epochs, losses) = demo
    saved = save_transformer_lens(model, tmp_path / "plain.pt", dataset=ds)
    raw = torch.load(saved, weights_only=True)
    assert "blocks.0.mlp.out.weight" in raw["model"]  # 4.x's own names
    run = load_transformer_lens(saved)
    assert isinstance(run.model, TransformerBridge)
    with torch.no_grad():
        assert torch.equal(run.model(ds.model_inputs()), model(ds.model_inputs()))
    # The demo's layout, its checkpoints as bridge state dicts: the progress curves over them.
    path = tmp_path / "demo.pth"
    torch.save({"model": model.state_dict(), "config": dict(model.cfg.to_dict()),
                "train_indices": train_indices, "train_losses": losses,
                "test_losses": losses, "checkpoints": checkpoints,
                "checkpoint_epochs": epochs}, path)
    a = mechmem.analyze(load_transformer_lens(path))
    assert a.progress_curves is not None and a.progress_curves.steps.tolist() == [0, 100, 200]
    assert float(a.progress_curves.train_loss[0]) == pytest.approx(losses[0], rel=1e-6)


def test_transformer_lens_3_files_open_through_convert_tl_checkpoint(capsys):
    # A file written by TransformerLens 3.9 (HookedTransformer's property names, its config as
    # plain data, the demo's train_indices, losses and checkpoints) opens on 4.x as a bridge.
    raw = torch.load(DATA_3_9, weights_only=True)
    run = load_transformer_lens(DATA_3_9)
    assert isinstance(run.model, TransformerBridge)
    cfg = run.model.cfg
    assert run.model.state_dict().keys() == convert_tl_checkpoint(raw["model"], cfg).keys()
    p = cfg.d_vocab_out
    with torch.no_grad():
        logits = run.model(run.dataset.model_inputs())[:, -1]
    assert torch.allclose(logits, raw["logits"], atol=1e-5)  # 3.9's own logits
    a = mechmem.analyze(run)
    assert a.progress_curves is not None and a.progress_curves.steps.tolist() == [0, 2]
    assert a.accuracy.test >= 0 and a.dataset.p == p
    assert main(["analyze", DATA_3_9]) == 0
    assert "TransformerBridge" in capsys.readouterr().out


def test_property_names_invert_convert_tl_checkpoint(demo):
    model, _, _, _ = demo
    state = model.state_dict()
    legacy = to_property_format(state, model.cfg)
    assert "blocks.0.attn.W_Q" in legacy and legacy["blocks.0.attn.W_Q"].shape == (4, 32, 8)
    back = convert_tl_checkpoint(legacy, model.cfg)
    assert back.keys() == state.keys() and all(torch.equal(back[k], state[k]) for k in state)


def test_caching_on_a_bridge_keeps_every_hook(demo):
    # run_with_cache through the wrapper returns the bridge's cache, 3.x names included.
    model, ds, _, _ = demo
    tlm = TransformerLensModel(model)
    logits, cache = tlm.run_with_cache(ds.model_inputs()[:5])
    assert logits.shape == (5, P)
    assert {"blocks.0.mlp.hook_post", "blocks.0.hook_resid_post", "hook_embed"} <= set(cache.keys())


def test_the_checked_in_transformer_lens_4_file_opens():
    raw = torch.load("tests/data/transformer_lens_4_3.pt", weights_only=True)
    run = load_transformer_lens("tests/data/transformer_lens_4_3.pt")
    with torch.no_grad():
        logits = run.model(run.dataset.model_inputs())[:, -1]
    assert torch.allclose(logits, raw["logits"], atol=1e-6)


def test_the_doc_runs_on_4(demo, tmp_path, monkeypatch):
    # Every Python block of docs/transformer-lens.md: the boot_native one (at p 23 instead of
    # the demo's 113, to keep the suite fast), then the notebook, converter and file blocks on
    # the model it built.
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "transformer-lens.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert len(blocks) == 4 and "boot_native" in blocks[0] and "p = 113" in blocks[0]
    monkeypatch.chdir(tmp_path)
    namespace: dict = {}
    with single_thread(), torch.random.fork_rng():
        torch.manual_seed(0)
        for block in [blocks[0].replace("p = 113", "p = 23")] + blocks[1:]:
            exec(compile(block, "docs/transformer-lens.md", "exec"), namespace)
    assert isinstance(namespace["model"], TransformerBridge)
    assert (tmp_path / "grokking.html").exists() and (tmp_path / "grokking.pt").exists()
    assert namespace["back"].cfg == namespace["mine"].cfg
    assert isinstance(namespace["tl_model"], TransformerBridge)


def test_a_pickled_3x_config_is_refused_then_explained_on_4(capsys):
    # TransformerLens 3.9's demo save pickles its HookedTransformerConfig, a class 4.x removed.
    path = "tests/data/transformer_lens_3_9_pickled.pth"
    with pytest.raises(ValueError, match="refused to load: it pickles TransformerLens's "
                                         "HookedTransformerConfig"):
        load_transformer_lens(path)
    with pytest.raises(ValueError, match=r"which the installed TransformerLens 4.x no longer "
                                         r"has: open it once where TransformerLens 3.x"):
        load_transformer_lens(path, trust_pickled_code=True)
    assert main(["analyze", path, "--trust-pickled-code"]) == 2
    assert capsys.readouterr().err.count("\n") == 1
