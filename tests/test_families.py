"""The 3-layer MLP and the transformer: forwards against plain-torch references, TransformerLens
names and shapes, and the analyzers reading them through their neuron sites."""

import math

import pytest
import torch
import torch.nn.functional as F

from mechmem import analytic_solution, analyze, make_dataset
from mechmem.analysis import ablate, fourier, ipr_scores, pruning_curves
from mechmem.analysis.frequencies import frequency_power, neuron_frequencies
from mechmem.models import (
    HookedMLP,
    HookedMLP3,
    HookedTransformer,
    MLP3Config,
    MLPConfig,
    TransformerConfig,
    neuron_sites,
)

pytestmark = pytest.mark.usefixtures("one_thread")

P = 13
PAIRS = torch.cartesian_prod(torch.arange(P), torch.arange(P))


def _randomize(model, seed=1):
    """Give every parameter and BatchNorm buffer non-trivial values (biases, norm factors)."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.1)
        for name, b in model.named_buffers():
            if name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
            elif name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
    return model.eval()


def _act(name, x):
    return {"relu": F.relu, "gelu": F.gelu, "quad": lambda t: t * t}[name](x)


def reference_transformer(model, pairs):
    """The forward written from the paper's description with plain torch ops, head by head."""
    cfg, sd = model.cfg, model.state_dict()

    def ln(x, key):
        if cfg.norm == "none":
            return x
        return F.layer_norm(x, (cfg.d_model,), sd[f"{key}.w"], sd[f"{key}.b"], eps=1e-5)

    def b(key, shape):
        return sd.get(key, torch.zeros(shape))

    x = sd["embed.W_E"][pairs] + sd["pos_embed.W_pos"][None, :2]
    for L in range(cfg.n_layers):
        pre = f"blocks.{L}"
        h = ln(x, f"{pre}.ln1")
        attn = torch.zeros_like(x)
        for head in range(cfg.n_heads):
            q = h @ sd[f"{pre}.attn.W_Q"][head] + b(f"{pre}.attn.b_Q", (cfg.n_heads, 1))[head]
            k = h @ sd[f"{pre}.attn.W_K"][head] + b(f"{pre}.attn.b_K", (cfg.n_heads, 1))[head]
            v = h @ sd[f"{pre}.attn.W_V"][head] + b(f"{pre}.attn.b_V", (cfg.n_heads, 1))[head]
            scale = cfg.d_head if cfg.init == "paper" else math.sqrt(cfg.d_head)
            pattern = torch.softmax(q @ k.transpose(1, 2) / scale, dim=-1)
            attn = attn + (pattern @ v) @ sd[f"{pre}.attn.W_O"][head]
        x = x + attn + b(f"{pre}.attn.b_O", ())
        h = ln(x, f"{pre}.ln2")
        post = _act(cfg.act, h @ sd[f"{pre}.mlp.W_in"] + b(f"{pre}.mlp.b_in", ()))
        x = x + post @ sd[f"{pre}.mlp.W_out"] + b(f"{pre}.mlp.b_out", ())
    x = ln(x, "ln_final")
    logit_scale = 1 / cfg.d_model if cfg.init == "paper" else 1.0
    return x[:, -1] @ sd["unembed.W_U"] * logit_scale + b("unembed.b_U", ())


def reference_mlp3(model, pairs):
    cfg, sd = model.cfg, model.state_dict()

    def norm(x, key):
        if cfg.norm == "batchnorm":
            return F.batch_norm(x, sd[f"{key}.running_mean"], sd[f"{key}.running_var"],
                                sd[f"{key}.weight"], sd[f"{key}.bias"], False, 0.0, 1e-5)
        if cfg.norm == "layernorm":
            return F.layer_norm(x, (cfg.width,), sd[f"{key}.weight"], sd[f"{key}.bias"])
        return x

    zero = torch.zeros(())
    h = sd["U"][:, pairs[:, 0]].T + sd["V"][:, pairs[:, 1]].T + sd.get("b_in", zero)
    h = norm(_act(cfg.act, h), "layers.0.norm")
    h = norm(_act(cfg.act, h @ sd["W_hidden"].T + sd.get("b_hidden", zero)), "layers.1.norm")
    return h @ sd["W"].T + sd.get("b_out", zero)


@pytest.mark.parametrize("norm", ["none", "layernorm"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("act", ["relu", "gelu"])
@pytest.mark.parametrize("init", ["paper", "gpt2"])
def test_transformer_forward_matches_the_reference(norm, bias, act, init):
    model = _randomize(HookedTransformer(TransformerConfig(
        p=P, d_model=16, n_heads=4, d_mlp=24, norm=norm, bias=bias, act=act, init=init), seed=0))
    with torch.no_grad():
        torch.testing.assert_close(model(PAIRS), reference_transformer(model, PAIRS))


def test_two_layer_transformer_matches_the_reference():
    model = _randomize(HookedTransformer(TransformerConfig(p=P, d_model=8, n_heads=2, d_mlp=12,
                                                           n_layers=2), seed=3))
    with torch.no_grad():
        torch.testing.assert_close(model(PAIRS), reference_transformer(model, PAIRS))


@pytest.mark.parametrize("norm", ["none", "batchnorm", "layernorm"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("act", ["relu", "quad"])
def test_mlp3_forward_matches_the_reference(norm, bias, act):
    model = _randomize(HookedMLP3(MLP3Config(p=P, width=20, norm=norm, bias=bias, act=act),
                                  seed=0))
    with torch.no_grad():
        torch.testing.assert_close(model(PAIRS), reference_mlp3(model, PAIRS))


def test_paper_init_draws_the_authors_scales():
    cfg = TransformerConfig(p=97, d_model=128, n_heads=4, d_mlp=512)
    sd = HookedTransformer(cfg, seed=0).state_dict()
    assert abs(float(sd["embed.W_E"].std()) - 1.0) < 0.02
    assert abs(float(sd["blocks.0.mlp.W_out"].std()) - 512**-0.5) < 0.002
    assert abs(float(sd["blocks.0.attn.W_Q"].std()) - 128**-0.5) < 0.002
    gpt2 = HookedTransformer(TransformerConfig(p=97, init="gpt2"), seed=0).state_dict()
    assert abs(float(gpt2["embed.W_E"].std()) - 0.8 / 128**0.5) < 0.002


def test_transformer_weights_are_named_and_oriented_as_transformer_lens():
    cfg = TransformerConfig(p=P, d_model=16, n_heads=4, d_mlp=24)
    shapes = {k: tuple(v.shape) for k, v in HookedTransformer(cfg).state_dict().items()}
    assert shapes == {
        "embed.W_E": (P, 16), "pos_embed.W_pos": (2, 16),
        "blocks.0.attn.W_Q": (4, 16, 4), "blocks.0.attn.W_K": (4, 16, 4),
        "blocks.0.attn.W_V": (4, 16, 4), "blocks.0.attn.W_O": (4, 4, 16),
        "blocks.0.mlp.W_in": (16, 24), "blocks.0.mlp.W_out": (24, 16),
        "unembed.W_U": (16, P),
    }


def test_transformer_hooks_have_transformer_lens_names_and_shapes():
    cfg = TransformerConfig(p=P, d_model=16, n_heads=4, d_mlp=24, norm="layernorm")
    model = HookedTransformer(cfg)
    _, cache = model.run_with_cache(PAIRS[:5])
    B, d, h, dh, m = 5, 16, 4, 4, 24
    expected = {
        "hook_embed": (B, 2, d), "hook_pos_embed": (B, 2, d),
        "blocks.0.hook_resid_pre": (B, 2, d),
        "blocks.0.ln1.hook_scale": (B, 2, 1), "blocks.0.ln1.hook_normalized": (B, 2, d),
        "blocks.0.attn.hook_q": (B, 2, h, dh), "blocks.0.attn.hook_k": (B, 2, h, dh),
        "blocks.0.attn.hook_v": (B, 2, h, dh), "blocks.0.attn.hook_attn_scores": (B, h, 2, 2),
        "blocks.0.attn.hook_pattern": (B, h, 2, 2), "blocks.0.attn.hook_z": (B, 2, h, dh),
        "blocks.0.hook_attn_out": (B, 2, d), "blocks.0.hook_resid_mid": (B, 2, d),
        "blocks.0.ln2.hook_scale": (B, 2, 1), "blocks.0.ln2.hook_normalized": (B, 2, d),
        "blocks.0.mlp.hook_pre": (B, 2, m), "blocks.0.mlp.hook_post": (B, 2, m),
        "blocks.0.hook_mlp_out": (B, 2, d), "blocks.0.hook_resid_post": (B, 2, d),
        "ln_final.hook_scale": (B, 2, 1), "ln_final.hook_normalized": (B, 2, d),
    }
    assert {k: tuple(v.shape) for k, v in cache.items()} == expected
    torch.testing.assert_close(cache["blocks.0.attn.hook_pattern"].sum(-1),
                               torch.ones(B, h, 2))
    torch.testing.assert_close(cache["blocks.0.hook_resid_post"],
                               cache["blocks.0.hook_resid_mid"] + cache["blocks.0.hook_mlp_out"])


def test_transformer_lens_style_hook_code_runs_unchanged():
    model = _randomize(HookedTransformer(TransformerConfig(p=P, d_model=16, n_heads=4,
                                                           d_mlp=24)))

    def ablate_neuron(act, hook):  # TransformerLens passes the hook point as `hook=`
        act[:, :, 7] = 0.0
        return act

    with torch.no_grad():
        ablated = model.run_with_hooks(PAIRS, fwd_hooks=[("blocks.0.mlp.hook_post",
                                                          ablate_neuron)])
        model.blocks[0].mlp.W_out[7] = 0.0  # the same neuron removed from the weights
        torch.testing.assert_close(ablated, reference_transformer(model, PAIRS))
    assert not model.list_hooks()


def test_mlp3_hooks_cover_every_layer():
    model = HookedMLP3(MLP3Config(p=P, width=20))
    _, cache = model.run_with_cache(PAIRS[:3])
    assert {k: tuple(v.shape) for k, v in cache.items()} == {
        "hook_embed_U": (3, 20), "hook_embed_V": (3, 20),
        **{f"layers.{i}.hook_{k}": (3, 20) for i in (0, 1) for k in ("pre", "post", "normed")},
        "hook_logits": (3, P)}


def test_sites_of_each_family():
    mlp = HookedMLP(MLPConfig(p=P, width=8))
    (site,) = neuron_sites(mlp)
    assert site.hook == "hook_normed" and torch.equal(site.output, mlp.W.detach())
    assert torch.equal(site.inputs[0], mlp.U.detach())
    mlp3 = HookedMLP3(MLP3Config(p=P, width=8))
    assert [(s.name, len(s.inputs), s.output is not None) for s in neuron_sites(mlp3)] == [
        ("layers.0", 2, False), ("layers.1", 0, True)]
    tf = HookedTransformer(TransformerConfig(p=P, d_model=16, n_heads=2, d_mlp=24))
    embed, mlp_site = neuron_sites(tf)
    assert embed.width == 16 and torch.equal(embed.inputs[0], tf.W_E.detach().T)
    torch.testing.assert_close(mlp_site.output,
                               (tf.blocks[0].mlp.W_out @ tf.W_U).detach().T / 16)
    with pytest.raises(TypeError, match="does not show its neurons"):
        neuron_sites(torch.nn.Linear(2, 2))


def _rfft_ipr(x):
    """IPR (r = 2) of each row's |rfft|, written independently of mechmem.spectral."""
    a = torch.fft.rfft(x.to(torch.float64), dim=-1).abs()
    return (a**4).sum(-1) / (a**2).sum(-1) ** 2


def test_transformer_embedding_ipr_is_one_per_column_of_W_E():
    model = HookedTransformer(TransformerConfig(p=P, d_model=16, n_heads=2, d_mlp=24))
    res = ipr_scores(model, "add", site="embed")
    assert res.combined.shape == (16,) and res.site == "embed"
    torch.testing.assert_close(res.combined, _rfft_ipr(model.W_E.detach().T))
    assert res.parts == ("a", "b") and torch.isnan(res.W).all()


def test_mlp3_ipr_per_layer():
    model = HookedMLP3(MLP3Config(p=P, width=10))
    first = ipr_scores(model, "add", site="layers.0")
    torch.testing.assert_close(first.combined, (_rfft_ipr(model.U.detach())
                                                + _rfft_ipr(model.V.detach())) / 2)
    last = ipr_scores(model, "add")
    assert last.site == "layers.1"
    torch.testing.assert_close(last.combined, _rfft_ipr(model.W.detach().T))


def test_weight_fourier_needs_both_inputs_and_an_output():
    with pytest.raises(ValueError, match="neuron_frequencies"):
        fourier(HookedTransformer(TransformerConfig(p=P, d_model=8, n_heads=2, d_mlp=8)), "add")


def test_frequency_power_of_pure_cosines():
    a, b = PAIRS[:, 0].double(), PAIRS[:, 1].double()
    acts = torch.stack([torch.cos(2 * math.pi * 3 * (a + b) / P),
                        torch.cos(2 * math.pi * 2 * a / P) + torch.sin(2 * math.pi * 5 * b / P)],
                       1)
    power = frequency_power(acts, PAIRS, "add", P)
    torch.testing.assert_close(power[0, 3], torch.tensor(1.0, dtype=torch.float64))
    torch.testing.assert_close(power[1, [2, 5]], torch.tensor([0.5, 0.5], dtype=torch.float64))


def test_activation_frequencies_agree_with_weight_frequencies_on_the_analytic_solution():
    model = analytic_solution(p=P, width=12)
    freq = neuron_frequencies(model, make_dataset(p=P))
    assert torch.equal(freq.key_freq, fourier(model, "add").dominant_freq)
    assert bool((freq.frac_explained > 0.75).all())


def _trained_transformer():
    from mechmem import TrainConfig, train

    cfg = TrainConfig(model="transformer", p=P, d_model=16, n_heads=2, width=32, steps=150,
                      lr=3e-3, corrupt_frac=0.2, eval_every=50, snapshot_every=None,
                      device="cpu")
    return train(cfg)


@pytest.fixture(scope="module")
def tf_ckpt():
    return _trained_transformer()


def test_transformer_pruning_fast_path_matches_forward_passes(tf_ckpt):
    model, ds = tf_ckpt.model, tf_ckpt.dataset
    ipr = ipr_scores(model, "add")
    fast = pruning_curves(model, ds, ipr, method="fast")
    slow = pruning_curves(model, ds, ipr, method="forward")
    for order in fast.curves:
        for m in ("train", "test", "corrupted_memorized"):
            torch.testing.assert_close(getattr(fast.curves[order], m),
                                       getattr(slow.curves[order], m), atol=1.5 / ds.n_train,
                                       rtol=0)


def test_transformer_ablation_is_weight_surgery(tf_ckpt):
    model = tf_ckpt.model
    with torch.no_grad(), ablate(model, [0, 5, 9]):
        ablated = model(PAIRS)
    surgery = HookedTransformer(model.cfg)
    surgery.load_state_dict(model.state_dict())
    with torch.no_grad():
        surgery.blocks[0].mlp.W_out[[0, 5, 9]] = 0.0
        torch.testing.assert_close(ablated, surgery.eval()(PAIRS))


def test_analyze_transformer_says_what_does_not_apply(tf_ckpt):
    a = analyze(tf_ckpt)
    assert a.family == "transformer" and a.fourier is None and a.batchnorm is None
    assert set(a.site_ipr) == {"embed", "blocks.0.mlp"} and a.ipr.site == "blocks.0.mlp"
    assert a.neurons.generalizing + a.neurons.memorizing + a.neurons.dead == 32
    assert len(a.notes) == 2 and any("BatchNorm" in n for n in a.notes)
    j = a.to_json_dict()
    assert j["family"] == "transformer" and j["fourier"] is None
    assert j["sites"]["embed"]["neurons"] == 16
    assert "mean" in a.summary() and "at embed" in a.summary()


def test_analyze_mlp_has_one_site_and_only_the_batchnorm_and_progress_notes():
    a = analyze(analytic_solution(p=P, width=12), make_dataset(p=P))
    assert set(a.site_ipr) == {"hidden"} and a.fourier is not None
    assert len(a.notes) == 2 and a.notes[0].startswith("BatchNorm factors")
    assert a.notes[1].startswith("Progress measures")
