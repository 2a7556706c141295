"""mechmem's hook API against TransformerLens's documented and observed behaviour, name by name.

The expectations come from TransformerLens's hook_points.py, HookedRootModule.py,
ActivationCache.py and utilities (get_act_name, Slice), and from running them: where mechmem
differs on purpose (docs/hooks.md, "Differences from TransformerLens"), the test says so.
"""

import numpy as np
import pytest
import torch
from torch import nn

from mechmem import HookedMLP, MLPConfig
from mechmem.cache import ActivationCache, Slice, get_act_name
from mechmem.hooks import HookedRootModule, HookPoint, LensHandle

D, N_LAYERS = 4, 3


class MLP(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.W_in, self.W_out = nn.Linear(D, 2 * D), nn.Linear(2 * D, D)
        self.hook_pre, self.hook_post = HookPoint(), HookPoint()

    def forward(self, x):
        return self.W_out(self.hook_post(torch.relu(self.hook_pre(self.W_in(x)))))


class Block(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.hook_resid_pre, self.hook_resid_post = HookPoint(), HookPoint()
        self.mlp = MLP()

    def forward(self, x):
        x = self.hook_resid_pre(x)
        return self.hook_resid_post(x + self.mlp(x))


class Toy(HookedRootModule):
    """A residual stack with TransformerLens's names: hook_embed, blocks.{L}.mlp.hook_post, ..."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Linear(D, D)
        self.hook_embed = HookPoint()
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYERS))
        self.setup()

    def forward(self, x, loss=False):
        x = self.hook_embed(self.embed(x))
        for block in self.blocks:
            x = block(x)
        return x.pow(2).sum() if loss else x


@pytest.fixture
def toy():
    torch.manual_seed(0)
    return Toy()


@pytest.fixture
def x():
    return torch.randn(2, 5, D, generator=torch.Generator().manual_seed(1))  # (batch, pos, d)


def noop(t, hook):
    return None


# HookPoint


def test_handles_are_lens_handles_with_tl_fields():
    hp = HookPoint()
    hp.add_hook(noop, "fwd", True, 7)
    hp.add_hook(noop, "bwd")
    (f,), (b,) = hp.fwd_hooks, hp.bwd_hooks
    assert isinstance(f, LensHandle) and isinstance(b, LensHandle)
    assert (f.is_permanent, f.context_level, f.user_hook) == (True, 7, noop)
    assert (b.is_permanent, b.context_level) == (False, None)
    assert callable(f.hook.remove)  # the torch RemovableHandle


def test_add_hook_positional_prepend_and_replacement():
    hp = HookPoint()
    plus, times = (lambda t, hook: t + 1), (lambda t, hook: t * 10)
    hp.add_hook(plus)
    hp.add_hook(times, "fwd", False, None, True)  # prepend: runs first
    assert torch.equal(hp(torch.ones(2)), torch.full((2,), 11.0))
    assert [h.user_hook for h in hp.fwd_hooks] == [times, plus]


def test_backward_prepend_runs_first(toy, x):
    order = []
    first, second = (lambda g, hook: order.append("a")), (lambda g, hook: order.append("b"))
    toy.hook_embed.add_hook(first, "bwd")
    toy.hook_embed.add_hook(second, "bwd", False, None, True)
    toy(x, loss=True).backward()
    assert order == ["b", "a"]
    assert [h.user_hook for h in toy.hook_embed.bwd_hooks] == [second, first]


def test_add_perma_hook_survives_remove_hooks():
    hp = HookPoint()
    hp.add_perma_hook(noop)
    hp.add_hook(noop)
    hp.remove_hooks()
    assert [h.is_permanent for h in hp.fwd_hooks] == [True]
    hp.remove_hooks(including_permanent=True)
    assert hp.fwd_hooks == []


def test_remove_hooks_defaults_and_level_semantics():
    hp = HookPoint()
    hp.add_hook(noop, "bwd")
    hp.add_hook(noop, "fwd", level=1)
    hp.add_hook(noop, "fwd", level=2)
    hp.add_hook(noop, "fwd", is_permanent=True, level=2)
    hp.remove_hooks()  # TransformerLens's default is "fwd": the backward hook stays
    assert len(hp.bwd_hooks) == 1 and [h.is_permanent for h in hp.fwd_hooks] == [True]
    hp.add_hook(noop, "fwd", level=1)
    hp.add_hook(noop, "fwd", level=2)
    hp.remove_hooks("fwd", level=2)
    assert [(h.context_level, h.is_permanent) for h in hp.fwd_hooks] == [(2, True), (1, False)]
    hp.remove_hooks("both", including_permanent=True, level=99)  # level 99 only, as in TL 4
    assert len(hp.fwd_hooks) == 2 and len(hp.bwd_hooks) == 1
    hp.remove_hooks("both", including_permanent=True)
    assert hp.fwd_hooks == [] and hp.bwd_hooks == []
    with pytest.raises(ValueError, match="'fwd', 'bwd' or 'both', got 'up'"):
        hp.remove_hooks("up")


def test_has_hooks_filters():
    hp = HookPoint()
    assert not hp.has_hooks()
    hp.add_hook(noop, "fwd", is_permanent=True, level=5)
    assert hp.has_hooks() and hp.has_hooks("fwd") and not hp.has_hooks("bwd")
    assert not hp.has_hooks(including_permanent=False)
    assert hp.has_hooks(level=5) and not hp.has_hooks(level=0)
    with pytest.raises(ValueError, match="Hook direction"):
        hp.has_hooks("sideways")


def test_ctx_and_clear_context():
    hp = HookPoint()
    hp.add_hook(lambda t, hook: hook.ctx.setdefault("seen", []).append(t.sum().item()))
    hp(torch.ones(3))
    hp(torch.ones(2))
    old = hp.ctx
    assert old == {"seen": [3.0, 2.0]}
    hp.clear_context()
    assert hp.ctx == {} and hp.ctx is not old


def test_layer(toy):
    assert [hp.layer() for name, hp in toy.hook_dict.items() if name.startswith("blocks.")] == [
        int(name.split(".")[1]) for name in toy.hook_dict if name.startswith("blocks.")
    ]
    with pytest.raises(ValueError, match="'hook_embed' is not in a layer"):
        toy.hook_embed.layer()
    with pytest.raises(ValueError, match="no name yet"):
        HookPoint().layer()


def test_repr_shows_name_and_counts(toy):
    hp = toy.blocks[1].mlp.hook_post
    assert repr(hp) == "HookPoint(name='blocks.1.mlp.hook_post')"
    hp.add_hook(noop)
    hp.add_hook(noop)
    hp.add_hook(noop, "bwd")
    assert repr(hp) == "HookPoint(name='blocks.1.mlp.hook_post', 2 fwd, 1 bwd)"
    assert repr(HookPoint()) == "HookPoint()"


@pytest.mark.parametrize("wrap", [lambda g: None, lambda g: g * 3, lambda g: (g * 3,)])
def test_backward_hook_may_return_none_tensor_or_one_tuple(toy, x, wrap):
    toy(x, loss=True).backward()
    clean = toy.embed.weight.grad.clone()
    toy.zero_grad()
    with toy.hooks(bwd_hooks=[("blocks.0.hook_resid_pre", lambda g, hook: wrap(g))]):
        toy(x, loss=True).backward()
    factor = 1 if wrap(torch.ones(1)) is None else 3
    torch.testing.assert_close(toy.embed.weight.grad, factor * clean)


def test_backward_hook_bad_return_is_a_clear_type_error(toy, x):
    with toy.hooks(bwd_hooks=[("hook_embed", lambda g, hook: (g, g))]):
        with pytest.raises(TypeError, match=r"None, a tensor or a one-tuple \(grad,\).*tuple of 2"):
            toy(x, loss=True).backward()


def test_later_backward_hooks_see_the_original_gradient(toy, x):
    seen = []
    toy(x, loss=True).backward()
    clean = toy.embed.bias.grad.clone()
    toy.zero_grad()
    bwd = [("hook_embed", lambda g, hook: torch.zeros_like(g)),
           ("hook_embed", lambda g, hook: seen.append(g.clone()))]
    with toy.hooks(bwd_hooks=bwd):
        toy(x, loss=True).backward()
    assert torch.count_nonzero(seen[0]) > 0  # not the first hook's zeros
    assert torch.count_nonzero(toy.embed.bias.grad) == 0  # the last replacement wins
    assert torch.count_nonzero(clean) > 0


# HookedRootModule


def test_setup_names_every_submodule(toy):
    for name, module in toy.named_modules():
        if name:
            assert module.name == name and toy.mod_dict[name] is module
    assert "blocks.2.mlp.W_in" in toy.mod_dict
    assert list(toy.hook_dict) == [n for n, m in toy.named_modules() if isinstance(m, HookPoint)]
    assert list(toy.hook_points()) == list(toy.hook_dict.values())


def test_context_level_counts_open_hooks_blocks(toy):
    assert toy.context_level == 0
    with toy.hooks():
        with toy.hooks([("hook_embed", noop)]):
            assert toy.context_level == 2
            assert toy.hook_embed.fwd_hooks[0].context_level == 2
    assert toy.context_level == 0


class Checked(Toy):
    """Refuses hooks on blocks.2.* and records every check, as a TL model extension would."""

    def __init__(self) -> None:
        super().__init__()
        self.checked = []

    def check_hooks_to_add(self, hook_point, hook_point_name, hook, dir="fwd",
                           is_permanent=False, prepend=False):
        self.checked.append((hook_point_name, dir, is_permanent))
        if hook_point_name.startswith("blocks.2."):
            raise ValueError(f"Cannot add a hook at {hook_point_name}.")


def test_check_hooks_to_add_sees_every_hook_a_user_adds(x):
    torch.manual_seed(0)
    model = Checked()
    model.add_hook("hook_embed", noop, "bwd", True)
    model.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_resid_pre", noop)])
    with model.hooks([("blocks.1.hook_resid_pre", noop)]):
        pass
    assert model.checked == [
        ("hook_embed", "bwd", True), ("blocks.0.hook_resid_pre", "fwd", False),
        ("blocks.1.hook_resid_pre", "fwd", False),
    ]
    model.reset_hooks(including_permanent=True)
    with pytest.raises(ValueError, match="Cannot add a hook at blocks.2.hook_resid_pre"):
        model.run_with_hooks(x, fwd_hooks=[("hook_embed", noop), ("blocks.2.hook_resid_pre", noop)])
    assert model.list_hooks() == {}


def test_caching_hooks_are_not_checked(x):
    # As in TransformerLens: a model refusing hooks it does not compute still caches everything.
    model = Checked()
    _, cache = model.run_with_cache(x)
    assert "blocks.2.hook_resid_pre" in cache and set(cache) == set(model.hook_dict)
    filled = model.add_caching_hooks(incl_bwd=True)
    model(x).sum().backward()
    assert "blocks.2.mlp.hook_post" in filled and "blocks.2.mlp.hook_post_grad" in filled
    _, fwd, _ = model.get_caching_hooks("blocks.2.hook_resid_post")
    assert [name for name, _ in fwd] == ["blocks.2.hook_resid_post"]
    assert model.checked == []
    model.reset_hooks()
    with pytest.raises(ValueError, match="Cannot add a hook at blocks.2.hook_resid_pre"):
        model.add_hook("blocks.2.hook_resid_pre", noop)


def test_check_and_add_hook_checks_then_adds(x):
    model = Checked()
    model.check_and_add_hook(model.hook_embed, "hook_embed", noop, "fwd", False, 4)
    assert model.hook_embed.fwd_hooks[0].context_level == 4
    with pytest.raises(ValueError, match="Cannot add"):
        model.check_and_add_hook(model.blocks[2].hook_resid_pre, "blocks.2.hook_resid_pre", noop)
    assert not model.blocks[2].hook_resid_pre.has_hooks()


def test_add_hook_by_name_predicate_and_errors(toy):
    toy.add_hook(lambda n: n.endswith("hook_post"), noop, "fwd", False, 3, False)
    assert set(toy.list_hooks()) == {f"blocks.{L}.mlp.hook_post" for L in range(N_LAYERS)}
    with pytest.raises(KeyError, match="No hook point named 'hook_nope'"):
        toy.add_hook("hook_nope", noop)
    with pytest.raises(KeyError, match="'embed' is a Linear, not a hook point"):
        toy.add_hook("embed", noop)


def test_root_add_perma_hook_survives_reset_and_contexts(toy, x):
    calls = []
    toy.add_perma_hook("hook_embed", lambda t, hook: calls.append("perm"))
    with toy.hooks([("hook_embed", lambda t, hook: calls.append("ctx"))]):
        toy(x)
    toy.reset_hooks()
    toy(x)
    assert calls == ["perm", "ctx", "perm"]
    assert [h.is_permanent for h in toy.hook_embed.fwd_hooks] == [True]


def test_remove_all_hook_fns(toy):
    toy.add_hook("hook_embed", noop, "fwd")
    toy.add_hook("hook_embed", noop, "bwd")
    toy.add_hook("hook_embed", noop, "fwd", level=2)
    toy.add_perma_hook("hook_embed", noop)
    toy.remove_all_hook_fns("bwd")
    assert len(toy.hook_embed.fwd_hooks) == 3 and toy.hook_embed.bwd_hooks == []
    toy.remove_all_hook_fns(level=2)
    assert [h.context_level for h in toy.hook_embed.fwd_hooks] == [None, None]
    toy.remove_all_hook_fns()
    assert [h.is_permanent for h in toy.hook_embed.fwd_hooks] == [True]
    toy.remove_all_hook_fns(including_permanent=True)
    assert toy.list_hooks() == {}


def test_reset_hooks_positional_and_contexts(toy):
    toy.hook_embed.ctx["k"] = 1
    toy.add_hook("hook_embed", noop, "bwd")
    toy.add_hook("hook_embed", noop, "fwd")
    toy.is_caching = True
    toy.reset_hooks(False, "fwd")
    assert toy.hook_embed.ctx == {"k": 1} and len(toy.hook_embed.bwd_hooks) == 1
    assert toy.hook_embed.fwd_hooks == [] and toy.is_caching is False
    toy.reset_hooks()
    assert toy.hook_embed.ctx == {} and toy.list_hooks() == {}


def test_clear_contexts(toy):
    for hp in toy.hook_points():
        hp.ctx["x"] = hp.name
    toy.clear_contexts()
    assert all(hp.ctx == {} for hp in toy.hook_points())


def test_hooks_positional_reset_hooks_end_and_clear_contexts(toy, x):
    outer = lambda t, hook: hook.ctx.update(outer=True)
    with toy.hooks([("hook_embed", outer)], [], True, True):
        with toy.hooks([("hook_embed", noop)], [], False):
            toy(x)
        assert [h.context_level for h in toy.hook_embed.fwd_hooks] == [1, 2]
    # The outer exit removes level-1 hooks only (the inner, kept one stays) and clears contexts.
    assert [h.context_level for h in toy.hook_embed.fwd_hooks] == [2]
    assert toy.hook_embed.ctx == {}


def test_run_with_hooks_keywords_and_model_kwargs(toy, x):
    clean = toy(x, loss=True)
    zeroed = toy.run_with_hooks(x, loss=True, fwd_hooks=[("blocks.2.hook_resid_post",
                                                          lambda t, hook: 0 * t)])
    assert zeroed.item() == 0 and clean.item() > 0
    toy.run_with_hooks(x, fwd_hooks=[("hook_embed", noop)], reset_hooks_end=False)
    assert len(toy.hook_embed.fwd_hooks) == 1
    toy.reset_hooks()
    toy.hook_embed.ctx["k"] = 1
    toy.run_with_hooks(x, fwd_hooks=[("blocks.0.hook_resid_pre", noop)])
    assert toy.hook_embed.ctx == {"k": 1}
    toy.run_with_hooks(x, fwd_hooks=[], clear_contexts=True)
    assert toy.hook_embed.ctx == {}  # the reset at exit clears every hook point's context


def test_backward_hooks_after_reset_hooks_end_fire_once(toy, x):
    """Measured, in TransformerLens too: torch ties full backward hooks to the forward pass."""
    calls = []
    record = lambda g, hook: calls.append(1)
    out = toy.run_with_hooks(x, loss=True, bwd_hooks=[("hook_embed", record)])
    assert toy.list_hooks() == {}
    out.backward()
    assert calls == [1]
    toy(x, loss=True).backward()
    assert calls == [1]
    toy.zero_grad()
    out = toy.run_with_hooks(x, loss=True, bwd_hooks=[("hook_embed", lambda g, hook: 0 * g)])
    out.backward()
    assert torch.count_nonzero(toy.embed.weight.grad) == 0  # the replacement still applies


def test_run_with_cache_values_and_tl_keywords(toy, x):
    out, cache = toy.run_with_cache(x, names_filter=lambda n: n.startswith("blocks.0"))
    torch.testing.assert_close(out, toy(x))
    resid = toy.embed(x).detach()
    torch.testing.assert_close(cache["blocks.0.hook_resid_pre"], resid)
    torch.testing.assert_close(cache["blocks.0.mlp.hook_pre"], toy.blocks[0].mlp.W_in(resid))
    assert set(cache) == {n for n in toy.hook_dict if n.startswith("blocks.0")}
    assert all(not t.requires_grad for t in cache.values()) and toy.list_hooks() == {}
    _, one = toy.run_with_cache(x[:1], names_filter="hook_embed", remove_batch_dim=True,
                                device="cpu", return_cache_object=False)
    assert one["hook_embed"].shape == (5, D) and one.has_batch_dim is False
    toy.run_with_cache(x, names_filter="hook_embed", reset_hooks_end=False)
    assert len(toy.hook_embed.fwd_hooks) == 1


def test_run_with_cache_incl_bwd_and_pos_slice(toy, x):
    xg = x.clone().requires_grad_()
    loss, cache = toy.run_with_cache(xg, loss=True, names_filter="hook_embed", incl_bwd=True)
    embed = toy.embed(x)
    (grad,) = torch.autograd.grad(_loss_from_embed(toy, embed), embed)
    torch.testing.assert_close(loss, _loss_from_embed(toy, embed))
    torch.testing.assert_close(cache["hook_embed_grad"], grad)
    with pytest.raises(ValueError, match="must be a scalar"):
        toy.run_with_cache(x, incl_bwd=True)
    _, sliced = toy.run_with_cache(x, names_filter="hook_embed", pos_slice=(1, 3))
    torch.testing.assert_close(sliced["hook_embed"], cache["hook_embed"][:, 1:3])
    _, last = toy.run_with_cache(x, names_filter="hook_embed", pos_slice=-1)
    assert last["hook_embed"].shape == (2, 1, D)  # an int keeps the axis (Slice.unwrap)
    assert toy.list_hooks() == {}


def _loss_from_embed(toy, embed):
    h = embed
    for block in toy.blocks:
        h = block(h)
    return h.pow(2).sum()


@pytest.mark.parametrize(
    ("names_filter", "accept"),
    [(None, lambda n: True), ("hook_embed", lambda n: n == "hook_embed"),
     (["hook_embed", "nope"], lambda n: n == "hook_embed"),
     (lambda n: n.endswith("mlp.hook_post"), lambda n: n.endswith("mlp.hook_post")),
     ([], lambda n: False), ("nope", lambda n: False)],
)
def test_names_filter_accepts_tl_types(toy, x, names_filter, accept):
    _, cache = toy.run_with_cache(x, names_filter=names_filter)
    assert set(cache) == {n for n in toy.hook_dict if accept(n)}


@pytest.mark.parametrize("bad", [("hook_embed",), ("hook_embed", "blocks.0.hook_resid_pre")])
def test_names_filter_rejects_what_tl_rejects(toy, x, bad):
    """A tuple is not a list: TransformerLens's get_caching_hooks raises this ValueError."""
    with pytest.raises(ValueError, match="names_filter must be a string, list of strings, or func"):
        toy.run_with_cache(x, names_filter=bad)
    with pytest.raises(ValueError, match="names_filter must be a string"):
        toy.get_caching_hooks(bad)
    with pytest.raises(ValueError, match="names_filter must be a string"):
        toy.add_caching_hooks(bad)  # TL: AssertionError here; one error for one mistake
    assert toy.list_hooks() == {} and toy.context_level == 0


def test_get_caching_hooks_returns_unattached_hooks(toy, x):
    cache, fwd, bwd = toy.get_caching_hooks(["hook_embed"], incl_bwd=True)
    assert cache == {} and [n for n, _ in fwd] == ["hook_embed"] and [n for n, _ in bwd] == [
        "hook_embed"]
    assert toy.list_hooks() == {} and toy.is_caching
    assert toy.get_caching_hooks("hook_embed")[2] == []
    with toy.hooks(fwd):
        toy(x)
    torch.testing.assert_close(cache["hook_embed"], toy.embed(x).detach())


def test_add_caching_hooks_until_reset(toy, x):
    store = {}
    assert toy.add_caching_hooks("hook_embed", cache=store) is store
    toy(x)
    torch.testing.assert_close(store["hook_embed"], toy.embed(x).detach())
    assert [h.context_level for h in toy.hook_embed.fwd_hooks] == [None]
    toy.reset_hooks()
    assert toy.list_hooks() == {} and not toy.is_caching


def test_cache_all_and_cache_some_are_deprecated(toy, x):
    store = {}
    with pytest.warns(DeprecationWarning, match="cache_all is deprecated"):
        toy.cache_all(store)
    toy(x)
    assert set(store) == set(toy.hook_dict)
    toy.reset_hooks()
    some = {}
    with pytest.warns(DeprecationWarning, match="cache_some is deprecated"):
        toy.cache_some(some, lambda n: n.startswith("blocks.1"))
    toy(x)
    assert set(some) == {n for n in toy.hook_dict if n.startswith("blocks.1")}
    toy.reset_hooks()


def test_list_hooks_shape_and_filters(toy):
    a, b, c = (lambda t, hook: None), (lambda t, hook: None), (lambda t, hook: None)
    toy.add_hook("hook_embed", a)
    toy.add_hook("hook_embed", b, "bwd")
    toy.add_perma_hook("blocks.0.hook_resid_pre", c)
    listed = toy.list_hooks()
    assert {n: [h.user_hook for h in hs] for n, hs in listed.items()} == {
        "hook_embed": [a, b], "blocks.0.hook_resid_pre": [c]}
    assert all(isinstance(h, LensHandle) for hs in listed.values() for h in hs)
    assert list(toy.list_hooks(dir="bwd")) == ["hook_embed"]
    assert list(toy.list_hooks(including_permanent=False)) == ["hook_embed"]
    assert list(toy.list_hooks("blocks.0.hook_resid_pre")) == ["blocks.0.hook_resid_pre"]
    assert list(toy.list_hooks(("hook_embed",))) == ["hook_embed"]  # any collection, as in TL
    assert list(toy.list_hooks(lambda n: "blocks" in n)) == ["blocks.0.hook_resid_pre"]
    with pytest.raises(ValueError, match="Hook direction"):
        toy.list_hooks(dir="up")


# Activation cache


def test_cache_is_a_plain_dict_too(toy, x):
    _, cache = toy.run_with_cache(x)
    assert isinstance(cache, ActivationCache) and isinstance(cache, dict)
    assert list(cache) == list(cache.keys()) and set(cache) == set(toy.hook_dict)
    assert len(cache) == len(toy.hook_dict) and len(list(cache.values())) == len(cache)
    assert all(cache[k] is v for k, v in cache.items())
    assert dict(cache) == {k: cache[k] for k in cache} and cache.cache_dict is cache
    assert repr(cache) == f"ActivationCache with keys {list(cache)}"
    assert cache.has_embed and not cache.has_pos_embed


def test_cache_shorthand_through_get_act_name(toy, x):
    _, cache = toy.run_with_cache(x)
    assert cache["post", 0] is cache["blocks.0.mlp.hook_post"]
    assert cache["post", -1] is cache[f"blocks.{N_LAYERS - 1}.mlp.hook_post"]
    assert cache["resid_pre", 1] is cache["blocks.1.hook_resid_pre"]
    assert cache["pre2"] is cache["blocks.2.mlp.hook_pre"]
    assert cache["embed"] is cache["hook_embed"]
    with pytest.raises(KeyError, match="looked for blocks.0.attn.hook_k"):
        cache["k", 0]


def test_cache_short_names_on_hooked_mlp():
    model = HookedMLP(MLPConfig(p=7, width=8), seed=0).eval()
    _, cache = model.run_with_cache(torch.tensor([[1, 2], [3, 4]]))
    for short in ("embed_U", "embed_V", "pre", "post", "normed", "logits"):
        assert cache[short] is cache[f"hook_{short}"]
    with pytest.raises(ValueError, match="no layers"):
        cache["post", -1]
    with pytest.raises(KeyError, match="looked for blocks.0.mlp.hook_post"):
        cache["post", 0]


def test_cache_to_device_in_place(toy, x):
    _, cache = toy.run_with_cache(x, names_filter="hook_embed")
    assert cache.to("meta") is cache and cache["hook_embed"].device.type == "meta"


def test_cache_remove_batch_dim(toy, x):
    _, cache = toy.run_with_cache(x[:1])
    full = {k: v.clone() for k, v in cache.items()}
    assert cache.has_batch_dim and cache.remove_batch_dim() is cache
    assert not cache.has_batch_dim
    assert all(torch.equal(cache[k], full[k][0]) for k in cache)
    with pytest.warns(UserWarning, match="already having removed it"):
        cache.remove_batch_dim()
    _, big = toy.run_with_cache(x)
    with pytest.raises(ValueError, match=r"batch size 2 \(larger than one\)"):
        big.remove_batch_dim()


def test_cache_toggle_autodiff(toy, x):
    _, cache = toy.run_with_cache(x, names_filter="hook_embed")
    try:
        with pytest.warns(UserWarning, match="set autodiff to False"):
            cache.toggle_autodiff()
        assert not torch.is_grad_enabled()
        with pytest.warns(UserWarning, match="set autodiff to True"):
            cache.toggle_autodiff(True)
        assert torch.is_grad_enabled()
    finally:
        torch.set_grad_enabled(True)


def test_cache_apply_slice_to_batch_dim(toy, x):
    _, cache = toy.run_with_cache(x)
    first = cache.apply_slice_to_batch_dim(0)
    assert isinstance(first, ActivationCache) and not first.has_batch_dim
    assert all(torch.equal(first[k], cache[k][0]) for k in cache)
    picked = cache.apply_slice_to_batch_dim(Slice([1, 0]))
    assert picked.has_batch_dim and torch.equal(picked["hook_embed"], cache["hook_embed"][[1, 0]])
    assert first.apply_slice_to_batch_dim(None)["hook_embed"] is not None  # TL: AssertionError
    with pytest.raises(ValueError, match="without one"):
        first.apply_slice_to_batch_dim(0)


def test_stack_activation(toy, x):
    _, cache = toy.run_with_cache(x)
    stacked = cache.stack_activation("post")
    assert stacked.shape == (N_LAYERS, *cache["blocks.0.mlp.hook_post"].shape)
    assert all(torch.equal(stacked[L], cache["post", L]) for L in range(N_LAYERS))
    two = torch.stack([cache["blocks.0.hook_resid_pre"], cache["blocks.1.hook_resid_pre"]])
    assert torch.equal(cache.stack_activation("resid_pre", 2), two)
    with pytest.raises(ValueError, match="layer must be between 1 and 3"):
        cache.stack_activation("post", 0)


@pytest.mark.parametrize(
    ("args", "name"),
    [  # TransformerLens's own docstring examples, plus its aliases and the ln_final case
        (("k", 6, "a"), "blocks.6.attn.hook_k"), (("pre", 2), "blocks.2.mlp.hook_pre"),
        (("embed",), "hook_embed"), (("normalized", 27, "ln2"), "blocks.27.ln2.hook_normalized"),
        (("k6",), "blocks.6.attn.hook_k"), (("scale4ln1",), "blocks.4.ln1.hook_scale"),
        (("pre5",), "blocks.5.mlp.hook_pre"), (("attn", 0), "blocks.0.attn.hook_pattern"),
        (("attn_logits", 1), "blocks.1.attn.hook_attn_scores"),
        (("value", 3), "blocks.3.attn.hook_v"), (("mlp_post", 0), "blocks.0.mlp.hook_post"),
        (("resid_mid", 0, "b"), "blocks.0.hook_resid_mid"),
        (("scale",), "ln_final.hook_scale"), (("blocks.0.hook_x",), "blocks.0.hook_x"),
        (("hook_embed_U",), "hook_embed_U"), (("embed_U",), "hook_embed_U"),
    ],
)
def test_get_act_name(args, name):
    assert get_act_name(*args) == name


@pytest.mark.parametrize(
    ("spec", "mode", "index"),
    [(None, "identity", slice(None)), (2, "int", 2), ((1,), "slice", slice(1)),
     ((1, 3), "slice", slice(1, 3)), ((0, 4, 2), "slice", slice(0, 4, 2)),
     ([0, 2], "array", [0, 2]), (torch.tensor([3, 1]), "array", [3, 1]),
     (np.array([1]), "array", [1])],
)
def test_slice_modes_match_plain_indexing(spec, mode, index):
    t = torch.arange(20).reshape(4, 5)
    s = Slice(spec)
    assert s.mode == mode
    torch.testing.assert_close(s.apply(t), t[index])
    torch.testing.assert_close(s.apply(t, dim=-1), t[:, index])
    expected = [index] if mode == "int" else np.arange(4)[index]
    assert np.array_equal(s.indices(4), expected)


def test_slice_unwrap_indices_and_errors():
    assert Slice.unwrap(3).mode == "array"  # keeps the axis
    s = Slice((1, 3))
    assert Slice.unwrap(s) is s and repr(s) == "Slice: slice(1, 3, None) Mode: slice "
    assert np.array_equal(Slice(2).indices(), [2])
    with pytest.raises(ValueError, match="max_ctx must be given"):
        s.indices()
    with pytest.raises(ValueError, match="got float: 1.5"):
        Slice(1.5)
