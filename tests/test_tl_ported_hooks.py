"""TransformerLens's own unit tests of hook_points, HookedRootModule and ActivationCache (3.9 and
4.x), ported name for name to mechmem's hook API, and run against TransformerLens as the control.

Every test takes `lens`: mechmem's hook API, or the installed TransformerLens's (the control, in
each test environment: 3.9 in .venv, 4.x in .venv-tl4). Where the two differ on purpose the test
says which error each raises (docs/hooks.md, "Differences"). Real hook points and real torch
handles throughout: TransformerLens's versions mock torch's RemovableHandle, these do not. The
TransformerLens tests left out (private methods, features mechmem does not offer) are listed in
docs/hooks.md, "TransformerLens's unit tests", with the reason.
"""

import importlib.metadata
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import mechmem.cache
import mechmem.hook_point
import mechmem.hooks


@dataclass(frozen=True)
class Lens:
    """One implementation of the hook API, as the tests use it."""

    name: str
    HookPoint: type
    HookedRootModule: type
    ActivationCache: type
    hook_point_module: object  # the module HookPoint lives in
    major: int  # TransformerLens's major version; 0 for mechmem
    batch_error: type  # remove_batch_dim on a batch larger than one


def _mechmem() -> Lens:
    return Lens("mechmem", mechmem.hooks.HookPoint, mechmem.hooks.HookedRootModule,
                mechmem.cache.ActivationCache, mechmem.hook_point, 0, ValueError)


def _transformer_lens() -> Lens:
    pytest.importorskip("transformer_lens")
    import transformer_lens.hook_points as hook_points
    from transformer_lens.ActivationCache import ActivationCache
    from transformer_lens.HookedRootModule import HookedRootModule

    major = int(importlib.metadata.version("transformer-lens").split(".")[0])
    return Lens("transformer_lens", hook_points.HookPoint, HookedRootModule, ActivationCache,
                hook_points, major, AssertionError)


@pytest.fixture(params=["mechmem", "transformer_lens"])
def lens(request) -> Lens:
    return _mechmem() if request.param == "mechmem" else _transformer_lens()


def since_tl4(lens: Lens) -> None:
    """Skip the control on TransformerLens 3.x for behaviour that 4.x added or fixed."""
    if lens.major == 3:
        pytest.skip("TransformerLens 3.x has not this behaviour (4.x added or fixed it)")


def tl_only(lens: Lens, what: str) -> None:
    """Skip mechmem for a TransformerLens feature it does not offer (docs/hooks.md)."""
    if lens.name == "mechmem":
        pytest.skip(f"mechmem does not offer {what} (docs/hooks.md)")


def setup_hook_point_and_hook(lens: Lens):
    def hook(activation, hook):
        return activation

    return lens.HookPoint(), hook


# --- hook_points: HookPoint -------------------------------------------------------------------


def test_remove_permanent_hooks_respects_level_for_both_directions(lens):
    since_tl4(lens)
    hook_point, hook = setup_hook_point_and_hook(lens)
    for direction in ("fwd", "bwd"):
        hook_point.add_hook(hook, dir=direction, is_permanent=True, level=1)
        hook_point.add_hook(hook, dir=direction, is_permanent=True, level=2)
    hook_point.remove_hooks(dir="both", including_permanent=True, level=2)
    assert [h.context_level for h in hook_point.fwd_hooks] == [1]
    assert [h.context_level for h in hook_point.bwd_hooks] == [1]


def test_remove_permanent_hooks_without_level_removes_all_levels(lens):
    hook_point, hook = setup_hook_point_and_hook(lens)
    hook_point.add_hook(hook, is_permanent=True, level=1)
    hook_point.add_hook(hook, is_permanent=True, level=2)
    hook_point.remove_hooks(including_permanent=True)
    assert hook_point.fwd_hooks == []


def test_hooked_root_module_permanent_reset_respects_level(lens):
    since_tl4(lens)
    model = lens.HookedRootModule()
    model.hook = lens.HookPoint()
    model.setup()
    _, hook = setup_hook_point_and_hook(lens)
    model.hook.add_hook(hook, is_permanent=True, level=1)
    model.hook.add_hook(hook, is_permanent=True, level=2)
    model.reset_hooks(including_permanent=True, level=2)
    assert [h.context_level for h in model.hook.fwd_hooks] == [1]


def test_add_hook_forward(lens):
    hook_point, hook = setup_hook_point_and_hook(lens)
    hook_point.add_hook(hook, dir="fwd")
    assert len(hook_point.fwd_hooks) == 1 and hook_point.bwd_hooks == []
    assert len(hook_point._forward_hooks) == 1  # a real torch hook behind it


def test_add_hook_backward(lens):
    hook_point, hook = setup_hook_point_and_hook(lens)
    hook_point.add_hook(hook, dir="bwd")
    assert len(hook_point.bwd_hooks) == 1 and hook_point.fwd_hooks == []


def test_add_hook_permanent(lens):
    hook_point, hook = setup_hook_point_and_hook(lens)
    hook_point.add_hook(hook, dir="fwd", is_permanent=True)
    assert hook_point.fwd_hooks[0].is_permanent


def test_add_hook_with_level(lens):
    hook_point, hook = setup_hook_point_and_hook(lens)
    hook_point.add_hook(hook, dir="fwd", level=5)
    assert hook_point.fwd_hooks[0].context_level == 5


def test_add_hook_prepend(lens):
    hook_point, _ = setup_hook_point_and_hook(lens)
    calls = []

    def hook1(activation, hook):
        calls.append(1)
        return activation

    def hook2(activation, hook):
        calls.append(2)
        return activation

    hook_point.add_hook(hook1, dir="fwd")
    hook_point.add_hook(hook2, dir="fwd", prepend=True)
    assert len(hook_point.fwd_hooks) == 2
    # The prepended hook's torch handle was registered second (a larger id) and sits first.
    assert hook_point.fwd_hooks[0].hook.id > hook_point.fwd_hooks[1].hook.id
    hook_point(torch.ones(2))
    assert calls == [2, 1]


def test_enable_reshape(lens):
    tl_only(lens, "HookPoint.enable_reshape")
    conversion = _doubling_conversion(lens, revert_by=1)
    hook_point = lens.HookPoint()
    hook_point.enable_reshape(conversion)
    assert hook_point.hook_conversion is conversion


def test_enable_reshape_with_none(lens):
    tl_only(lens, "HookPoint.enable_reshape")
    hook_point = lens.HookPoint()
    hook_point.enable_reshape(None)
    assert hook_point.hook_conversion is None


class _Holder(nn.Module):
    def __init__(self, lens: Lens) -> None:
        super().__init__()
        self.hook_point = lens.HookPoint()

    def forward(self, x):
        return self.hook_point(x)


def _doubling_conversion(lens: Lens, revert_by: float):
    """TransformerLens's tensor conversion that doubles on the way in and adds on the way out."""
    from transformer_lens.conversion_utils.conversion_steps.base_tensor_conversion import (
        BaseTensorConversion,
    )

    class Doubling(BaseTensorConversion):
        def handle_conversion(self, input_value, *full_context):
            return input_value * 2

        def revert(self, input_value, *full_context):
            return input_value + revert_by

    return Doubling()


def test_reshape_functionality_integration(lens):
    tl_only(lens, "HookPoint.enable_reshape")
    module = _Holder(lens)
    module.hook_point.enable_reshape(_doubling_conversion(lens, revert_by=10))
    module.hook_point.add_hook(lambda activation, hook: activation + 1, dir="fwd")
    # Converted (x 2), hooked (+ 1), reverted (+ 10).
    assert torch.equal(module(torch.tensor([1.0, 2.0, 3.0])), torch.tensor([13.0, 15.0, 17.0]))


def test_reshape_functionality_hook_returns_none_integration(lens):
    tl_only(lens, "HookPoint.enable_reshape")
    module = _Holder(lens)
    module.hook_point.enable_reshape(_doubling_conversion(lens, revert_by=10))
    module.hook_point.add_hook(lambda activation, hook: None, dir="fwd")
    x = torch.tensor([1.0, 2.0, 3.0])
    assert torch.equal(module(x), x)


def test_alias_hook_preserves_earlier_replacement_when_later_alias_returns_none(lens):
    tl_only(lens, "add_hook(alias_names=...)")
    hook_point, seen = lens.HookPoint(), []

    def selective_hook(activation, hook):
        seen.append((hook.name, activation.item()))
        return activation + 10 if hook.name == "replace" else None

    hook_point.add_hook(selective_hook, alias_names=["replace", "observe"])
    assert hook_point(torch.tensor(1.0)).item() == 11.0
    assert seen == [("replace", 1.0), ("observe", 11.0)]


def test_alias_hook_reverts_conversion_after_earlier_replacement(lens):
    tl_only(lens, "add_hook(alias_names=...) and enable_reshape")
    hook_point = lens.HookPoint()
    hook_point.enable_reshape(_doubling_conversion(lens, revert_by=100))
    hook_point.add_hook(lambda a, hook: a + 10 if hook.name == "replace" else None,
                        alias_names=["replace", "observe"])
    assert hook_point(torch.tensor(1.0)).item() == 112.0


def test_backward_alias_hook_preserves_earlier_gradient_replacement(lens):
    tl_only(lens, "add_hook(alias_names=...)")
    hook_point, seen = lens.HookPoint(), []

    def selective_hook(gradient, hook):
        seen.append((hook.name, gradient.item()))
        return gradient + 10 if hook.name == "replace" else None

    hook_point.add_hook(selective_hook, dir="bwd", alias_names=["replace", "observe"])
    x = torch.tensor(2.0, requires_grad=True)
    (hook_point(x) * 3).backward()
    assert seen == [("replace", 3.0), ("observe", 13.0)]
    assert x.grad is not None and x.grad.item() == 13.0


def test_add_hook_returns_its_registered_handle(lens):
    since_tl4(lens)
    hook_point, hook = setup_hook_point_and_hook(lens)
    first = hook_point.add_hook(hook)
    prepended = hook_point.add_hook(hook, prepend=True, level=3)
    bwd = hook_point.add_hook(hook, dir="bwd")
    assert hook_point.fwd_hooks == [prepended, first]
    assert prepended.context_level == 3
    assert hook_point.bwd_hooks == [bwd]


class TestHookPointHasHooks:
    """HookPoint.has_hooks, by direction, permanence and context level."""

    @pytest.fixture
    def hp(self, lens):
        return lens.HookPoint()

    @staticmethod
    def sample_hook(activation, hook):
        return activation

    def test_no_hooks_returns_false(self, hp):
        for direction in ("fwd", "bwd", "both"):
            assert not hp.has_hooks(dir=direction)
        assert not hp.has_hooks()

    def test_forward_hook_detection(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd")
        assert hp.has_hooks() and hp.has_hooks(dir="fwd") and hp.has_hooks(dir="both")
        assert not hp.has_hooks(dir="bwd")

    def test_backward_hook_detection(self, hp):
        hp.add_hook(self.sample_hook, dir="bwd")
        assert hp.has_hooks() and hp.has_hooks(dir="bwd") and hp.has_hooks(dir="both")
        assert not hp.has_hooks(dir="fwd")

    def test_both_direction_hooks(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd")
        hp.add_hook(self.sample_hook, dir="bwd")
        assert all(hp.has_hooks(dir=d) for d in ("fwd", "bwd", "both")) and hp.has_hooks()

    def test_permanent_hook_detection(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", is_permanent=True)
        assert hp.has_hooks() and hp.has_hooks(including_permanent=True)
        assert not hp.has_hooks(including_permanent=False)

    def test_non_permanent_hook_detection(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", is_permanent=False)
        assert hp.has_hooks()
        assert hp.has_hooks(including_permanent=True) and hp.has_hooks(including_permanent=False)

    def test_mixed_permanent_hooks(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", is_permanent=True)
        hp.add_hook(self.sample_hook, dir="fwd", is_permanent=False)
        assert hp.has_hooks(including_permanent=True) and hp.has_hooks(including_permanent=False)

    def test_only_permanent_hooks(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", is_permanent=True)
        hp.add_hook(self.sample_hook, dir="bwd", is_permanent=True)
        for direction in ("fwd", "bwd", "both"):
            assert hp.has_hooks(dir=direction, including_permanent=True)
            assert not hp.has_hooks(dir=direction, including_permanent=False)

    def test_context_level_filtering(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", level=0)
        hp.add_hook(self.sample_hook, dir="fwd", level=1)
        hp.add_hook(self.sample_hook, dir="bwd", level=2)
        assert hp.has_hooks(level=0) and hp.has_hooks(level=1) and hp.has_hooks(level=2)
        assert not hp.has_hooks(level=3) and not hp.has_hooks(level=-1)
        assert hp.has_hooks(level=None)

    def test_context_level_with_direction(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", level=0)
        hp.add_hook(self.sample_hook, dir="bwd", level=1)
        assert hp.has_hooks(dir="fwd", level=0) and hp.has_hooks(dir="bwd", level=1)
        assert not hp.has_hooks(dir="fwd", level=1) and not hp.has_hooks(dir="bwd", level=0)

    def test_context_level_with_permanent_flags(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", level=0, is_permanent=True)
        hp.add_hook(self.sample_hook, dir="fwd", level=1, is_permanent=False)
        assert hp.has_hooks(level=0, including_permanent=True)
        assert not hp.has_hooks(level=0, including_permanent=False)
        assert hp.has_hooks(level=1, including_permanent=True)
        assert hp.has_hooks(level=1, including_permanent=False)

    def test_all_parameters_combined(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", level=0, is_permanent=True)
        hp.add_hook(self.sample_hook, dir="fwd", level=1, is_permanent=False)
        hp.add_hook(self.sample_hook, dir="bwd", level=0, is_permanent=False)
        hp.add_hook(self.sample_hook, dir="bwd", level=2, is_permanent=True)
        assert hp.has_hooks(dir="fwd", level=0, including_permanent=True)
        assert not hp.has_hooks(dir="fwd", level=0, including_permanent=False)
        assert hp.has_hooks(dir="fwd", level=1, including_permanent=False)
        assert hp.has_hooks(dir="bwd", level=0, including_permanent=False)
        assert not hp.has_hooks(dir="bwd", level=1, including_permanent=False)
        assert hp.has_hooks(dir="bwd", level=2, including_permanent=True)

    def test_invalid_direction_raises_error(self, hp, lens):
        # mechmem: a ValueError listing the directions. TransformerLens: its runtime type
        # checker where one is on (its own test suite), else its ValueError.
        match = "fwd.*bwd.*both" if lens.name == "mechmem" else "invalid"
        with pytest.raises(ValueError, match=match):
            hp.has_hooks(dir="invalid")

    def test_multiple_hooks_same_criteria(self, hp):
        for _ in range(3):
            hp.add_hook(self.sample_hook, dir="fwd", level=0, is_permanent=False)
        assert hp.has_hooks(dir="fwd", level=0, including_permanent=False)
        assert len(hp.fwd_hooks) == 3

    def test_hook_removal_affects_detection(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd")
        assert hp.has_hooks()
        hp.remove_hooks(dir="both")
        assert not hp.has_hooks()

    def test_default_parameter_values(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", is_permanent=True, level=0)
        hp.add_hook(self.sample_hook, dir="bwd", is_permanent=False, level=1)
        assert hp.has_hooks()
        assert hp.has_hooks(dir="both", including_permanent=True, level=None)

    def test_edge_case_empty_after_filtering(self, hp):
        hp.add_hook(self.sample_hook, dir="fwd", is_permanent=True, level=5)
        assert not hp.has_hooks(including_permanent=False)
        assert not hp.has_hooks(dir="bwd")
        assert not hp.has_hooks(level=0)
        assert not hp.has_hooks(dir="bwd", level=5, including_permanent=True)

    def test_functional_hook_execution_still_works(self, hp):
        calls = []

        def recording_hook(activation, hook):
            calls.append("hook_called")
            return activation

        hp.add_hook(recording_hook, dir="fwd")
        assert hp.has_hooks()
        x = torch.tensor([1.0, 2.0, 3.0])
        assert torch.equal(hp(x), x) and calls == ["hook_called"]

    def test_hook_point_with_conversions(self, hp):
        hp.add_hook(lambda activation, hook: activation * 2, dir="fwd")
        assert hp.has_hooks() and hp.has_hooks(dir="fwd")
        assert torch.allclose(hp(torch.tensor([1.0, 2.0])), torch.tensor([2.0, 4.0]))


# --- HookedRootModule (3.9's test_hooked_root_module.py) -------------------------------------


def test_legacy_hook_points_attribute_error_for_unknown_names(lens):
    with pytest.raises(AttributeError, match="DefinitelyNotARealSymbol"):
        lens.hook_point_module.DefinitelyNotARealSymbol  # noqa: B018


# --- ActivationCache, batch axis (test_activation_cache_batch_dim.py) ---------------------------


def _mixed_batch1_cache(lens: Lens):
    gen = torch.Generator().manual_seed(0)
    return lens.ActivationCache(
        {"blocks.0.hook_resid_pre": torch.randn(1, 5, 4, generator=gen),
         "blocks.0.hook_pattern": torch.randn(1, 2, 5, 5, generator=gen),
         # Position-indexed: the first axis is the sequence, not the batch.
         "blocks.0.attn.hook_rel_pos_bias": torch.randn(5, 5, generator=gen)},
        model=None, has_batch_dim=True)


def test_remove_batch_dim_leaves_position_indexed_entries_alone(lens):
    cache = _mixed_batch1_cache(lens)
    bias_before = cache["blocks.0.attn.hook_rel_pos_bias"].clone()
    cache.remove_batch_dim()
    assert cache["blocks.0.hook_resid_pre"].shape == (5, 4)
    assert cache["blocks.0.hook_pattern"].shape == (2, 5, 5)
    assert torch.equal(cache["blocks.0.attn.hook_rel_pos_bias"], bias_before)


def test_remove_batch_dim_refuses_true_batch_gt_1_despite_broadcast_entry(lens):
    cache = lens.ActivationCache(
        {"blocks.0.hook_resid_pre": torch.zeros(2, 5, 4),
         "blocks.0.hook_mlp_out": torch.zeros(2, 5, 4),
         "hook_pos_indices": torch.zeros(1, 5)},
        model=None, has_batch_dim=True)
    with pytest.raises(lens.batch_error, match="batch size 2"):  # mechmem: ValueError
        cache.remove_batch_dim()


def test_apply_slice_to_batch_dim_skips_broadcast_entries(lens):
    cache = lens.ActivationCache(
        {"blocks.0.hook_resid_pre": torch.zeros(3, 5, 4),
         "blocks.0.hook_mlp_out": torch.zeros(3, 5, 4),
         "hook_pos_indices": torch.zeros(1, 5)},
        model=None, has_batch_dim=True)
    sliced = cache.apply_slice_to_batch_dim((1, 3))
    assert sliced["blocks.0.hook_resid_pre"].shape == (2, 5, 4)
    assert sliced["blocks.0.hook_mlp_out"].shape == (2, 5, 4)
    assert sliced["hook_pos_indices"].shape == (1, 5)
