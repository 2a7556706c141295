import pytest
import torch

from mechmem import HookedMLP, MLPConfig
from mechmem.hooks import HookedRootModule, HookPoint, hook_names_with_shapes

P, N = 11, 16
PAIRS = torch.tensor([[1, 2], [3, 4], [10, 0]])


@pytest.fixture
def model():
    return HookedMLP(MLPConfig(p=P, width=N), seed=0).eval()


def test_setup_names_every_hook_point(model):
    assert set(model.hook_dict) >= {"hook_pre", "hook_post", "hook_normed", "hook_logits"}
    for name, hp in model.hook_dict.items():
        assert hp.name == name
        assert model.mod_dict[name] is hp
    assert "norm" in model.mod_dict


def test_nested_root_modules_get_dotted_names():
    class Outer(HookedRootModule):
        def __init__(self):
            super().__init__()
            self.block = torch.nn.Module()
            self.block.hook_x = HookPoint()
            self.setup()

        def forward(self, x):
            return self.block.hook_x(x)

    outer = Outer()
    assert list(outer.hook_dict) == ["block.hook_x"]


def test_returned_tensor_replaces_activation(model):
    clean = model(PAIRS)
    zeroed = model.run_with_hooks(PAIRS, fwd_hooks=[("hook_normed", lambda x, hook: x * 0)])
    assert torch.allclose(zeroed, torch.zeros_like(zeroed))
    assert not torch.allclose(clean, zeroed)
    assert torch.equal(model(PAIRS), clean)  # gone after the call


def test_hook_returning_none_only_reads(model):
    seen = []
    out = model.run_with_hooks(
        PAIRS, fwd_hooks=[("hook_pre", lambda x, hook: seen.append((hook.name, x.shape)))]
    )
    assert seen == [("hook_pre", torch.Size([3, N]))]
    assert torch.equal(out, model(PAIRS))


@pytest.mark.parametrize(
    ("names_filter", "expected"),
    [
        (None, None),
        ("hook_post", {"hook_post"}),
        (["hook_pre", "hook_logits"], {"hook_pre", "hook_logits"}),
        (lambda name: name.endswith("post"), {"hook_post"}),
    ],
)
def test_run_with_cache_filters(model, names_filter, expected):
    out, cache = model.run_with_cache(PAIRS, names_filter=names_filter)
    assert set(cache) == (set(model.hook_dict) if expected is None else expected)
    for t in cache.values():
        assert not t.requires_grad
    assert torch.equal(out, model(PAIRS))
    assert model.list_hooks() == {}


def test_cache_matches_manual_computation(model):
    _, cache = model.run_with_cache(PAIRS)
    U, V, W = model.U.detach(), model.V.detach(), model.W.detach()
    pre = U[:, PAIRS[:, 0]].T + V[:, PAIRS[:, 1]].T
    assert torch.allclose(cache["hook_pre"], pre)
    assert torch.allclose(cache["hook_post"], pre**2)
    assert torch.allclose(cache["hook_logits"], pre**2 @ W.T, atol=1e-6)


def test_bad_names_filter_and_hook_name(model):
    with pytest.raises(ValueError, match="names_filter must be a string, list of strings"):
        model.run_with_cache(PAIRS, names_filter=("hook_pre",))
    with pytest.raises(KeyError, match="No hook point named 'hook_nope'"):
        model.add_hook("hook_nope", lambda x, hook: x)


def test_nested_contexts_remove_only_their_own_hooks(model):
    calls = []
    model.add_hook("hook_post", lambda x, hook: calls.append("perm"), is_permanent=True)
    with model.hooks([("hook_post", lambda x, hook: calls.append("outer"))]):
        with model.hooks([("hook_post", lambda x, hook: calls.append("inner"))]):
            model(PAIRS)
            assert calls == ["perm", "outer", "inner"]
        calls.clear()
        model(PAIRS)
        assert calls == ["perm", "outer"]
    calls.clear()
    model(PAIRS)
    assert calls == ["perm"]
    model.reset_hooks()
    assert {n: len(hs) for n, hs in model.list_hooks().items()} == {"hook_post": 1}
    model.reset_hooks(including_permanent=True)
    assert model.list_hooks() == {}


def test_failing_context_still_removes_its_hooks(model):
    model.add_hook("hook_pre", lambda x, hook: None, is_permanent=True)
    with pytest.raises(RuntimeError, match="boom"):
        with model.hooks([("hook_pre", lambda x, hook: x + 1)]):
            with model.hooks([("hook_logits", lambda x, hook: x)]):
                raise RuntimeError("boom")
    listed = model.list_hooks()
    assert [(n, [h.is_permanent for h in hs]) for n, hs in listed.items()] == [("hook_pre", [True])]


def test_error_inside_hook_propagates_and_cleans_up(model):
    def bad(x, hook):
        raise ValueError("bad hook")

    with pytest.raises(ValueError, match="bad hook"):
        model.run_with_hooks(PAIRS, fwd_hooks=[("hook_post", bad)])
    assert model.list_hooks() == {}


def test_prepend_runs_first(model):
    order = []
    a = lambda x, hook: order.append("a")
    b = lambda x, hook: order.append("b")
    model.add_hook("hook_pre", a)
    model.add_hook("hook_pre", b, prepend=True)
    model(PAIRS)
    assert order == ["b", "a"]
    assert [h.user_hook for h in model.list_hooks()["hook_pre"]] == [b, a]  # listed in run order
    model.reset_hooks()


def test_filter_predicate_attaches_to_all_matching(model):
    names = []
    record = lambda x, hook: names.append(hook.name)
    model.run_with_hooks(PAIRS, fwd_hooks=[(lambda n: "p" in n, record)])
    assert names == [n for n in model.hook_dict if "p" in n]


def test_backward_hooks_see_and_replace_gradients(model):
    grads = {}
    model.train()
    model.add_hook("hook_post", lambda g, hook: grads.setdefault("post", g.clone()), dir="bwd")
    model(PAIRS).sum().backward()
    assert grads["post"].shape == (3, N)
    expected = model.W.detach().sum(0).expand(3, N)
    assert torch.allclose(grads["post"], expected)
    model.reset_hooks()
    model.zero_grad()
    model.add_hook("hook_pre", lambda g, hook: torch.zeros_like(g), dir="bwd")
    model(PAIRS).sum().backward()
    assert torch.count_nonzero(model.U.grad) == 0
    assert torch.count_nonzero(model.W.grad) > 0
    model.reset_hooks()
    model.zero_grad()
    model(PAIRS).sum().backward()
    assert torch.count_nonzero(model.U.grad) > 0


def test_bad_direction_and_non_callable(model):
    with pytest.raises(ValueError, match="'fwd' or 'bwd'"):
        model.add_hook("hook_pre", lambda x, hook: x, dir="sideways")
    with pytest.raises(TypeError, match="callable|hook"):
        model.add_hook("hook_pre", 3)


def test_hook_names_with_shapes(model):
    shapes = hook_names_with_shapes(model, PAIRS)
    assert shapes["hook_logits"] == (3, P)
    assert shapes["hook_normed"] == (3, N)
