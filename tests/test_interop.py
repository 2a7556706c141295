"""Token formats and the TransformerLens interop's boundaries that need no transformer-lens."""

import subprocess
import sys

import pytest
import torch

from mechmem import DatasetSpec, HookedMLP, MLPConfig, analyze, make_dataset
from mechmem.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from mechmem.tokens import TOKEN_FORMATS, model_inputs, n_tokens, vocab_size


def test_model_inputs_table():
    pairs = torch.tensor([[0, 1], [4, 2]])
    assert model_inputs(pairs, "operands", p=5) is pairs  # today's inputs, untouched
    eq = model_inputs(pairs, "equals", p=5)
    assert eq.tolist() == [[0, 1, 5], [4, 2, 5]] and eq.dtype == pairs.dtype
    for tokens in TOKEN_FORMATS:
        assert model_inputs(pairs, tokens, p=5).shape == (2, n_tokens(tokens))
        assert int(model_inputs(pairs, tokens, p=5).max()) < vocab_size(tokens, 5)
    with pytest.raises(ValueError, match="`tokens` must be one of operands, equals"):
        model_inputs(pairs, "bos", p=5)


def test_dataset_tokens_change_inputs_only():
    plain = make_dataset(p=11, train_frac=0.5, corrupt_frac=0.2)
    eq = make_dataset(p=11, train_frac=0.5, corrupt_frac=0.2, tokens="equals")
    for field in ("pairs", "labels", "train_idx", "test_idx", "train_labels", "corrupted"):
        assert torch.equal(getattr(plain, field), getattr(eq, field)), field
    assert torch.equal(plain.model_inputs(), plain.pairs)
    assert eq.model_inputs(eq.train_pairs).tolist() == [
        [a, b, 11] for a, b in eq.train_pairs.tolist()]
    with pytest.raises(ValueError, match="`tokens` must be one of"):
        DatasetSpec(p=11, tokens="sep")


def test_default_format_leaves_specs_and_checkpoints_as_before():
    # Files and configs written before token formats have no "tokens" key, and read the same.
    assert "tokens" not in DatasetSpec(p=11).to_dict()
    assert DatasetSpec(p=11, tokens="equals").to_dict()["tokens"] == "equals"
    assert load_checkpoint("tests/data/checkpoint_v1.pt").dataset.spec.tokens == "operands"


def test_mechmem_models_refuse_the_equals_format(tmp_path):
    ds = make_dataset(p=11, train_frac=0.5, tokens="equals")
    model = HookedMLP(MLPConfig(p=11, width=8))
    with pytest.raises(ValueError, match="reads the 'operands' token format but the dataset's "
                                         "tokens are 'equals'"):
        analyze(model, ds)
    path = save_checkpoint(Checkpoint(model=model, dataset=ds), tmp_path / "eq.pt")
    with pytest.raises(ValueError, match="damaged mechmem checkpoint .*tokens 'equals'"):
        load_checkpoint(path)


def test_mechmem_and_its_cli_never_import_transformer_lens():
    code = (
        "import sys\n"
        "import mechmem, mechmem.interop, mechmem.cli\n"
        "from mechmem import analyze, make_dataset, HookedTransformer, TransformerConfig\n"
        "ds = make_dataset(p=7, train_frac=0.5)\n"
        "analyze(HookedTransformer(TransformerConfig(p=7, d_model=8, n_heads=2, d_mlp=8)), ds)\n"
        "from mechmem.cli import main\n"
        "assert main(['analyze', 'tests/data/checkpoint_v1.pt', '--json']) == 0\n"
        "assert 'transformer_lens' not in sys.modules, 'transformer_lens was imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr


def test_converters_without_transformer_lens_say_how_to_install(monkeypatch):
    from mechmem import HookedTransformer, TransformerConfig
    from mechmem.interop import to_transformer_lens

    monkeypatch.setitem(sys.modules, "transformer_lens", None)  # as if it were not installed
    model = HookedTransformer(TransformerConfig(p=7, d_model=8, n_heads=2, d_mlp=8))
    with pytest.raises(ImportError, match=r'pip install "mechmem\[tl\]"'):
        to_transformer_lens(model)


def test_transformer_lens_lines_are_told_apart_by_metadata(monkeypatch):
    # TransformerLens 4 raises for its removed names, even under getattr(..., None) (and the
    # error type changed between 4.x releases): nothing here may probe them.
    import importlib.metadata
    import types

    from mechmem.interop import is_transformer_lens_model, major_version, to_transformer_lens

    four = types.ModuleType("transformer_lens")

    def removed(name):
        raise ImportError(f"{name!r} was removed in TransformerLens 4.0.")

    four.__getattr__ = removed
    monkeypatch.setitem(sys.modules, "transformer_lens", four)
    model = HookedMLP(MLPConfig(p=7, width=8))
    assert not is_transformer_lens_model(model)
    analyze(model, make_dataset(p=7, train_frac=0.5))  # analysis is unaffected
    bridge = type("TransformerBridge", (torch.nn.Module,), {"__module__": "transformer_lens.x"})
    assert is_transformer_lens_model(bridge())
    for version, major in (("3.9.0", 3), ("4.3.0", 4), ("4.0.0a1", 4)):
        monkeypatch.setattr(importlib.metadata, "version", lambda name, v=version: v)
        assert major_version() == major
    monkeypatch.setattr(importlib.metadata, "version", lambda name: "5.0.0")
    from mechmem import HookedTransformer, TransformerConfig

    with pytest.raises(ImportError, match=r"TransformerLens 3.9 to 4.x; this is 5.0.0"):
        to_transformer_lens(HookedTransformer(TransformerConfig(p=7, d_model=8, n_heads=2,
                                                                d_mlp=8)))
