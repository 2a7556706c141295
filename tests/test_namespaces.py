"""`mechmem.train` and `mechmem.sweep` are the subpackages and can be called; every dotted
`mechmem.` name in the README, docs/ and the tutorial resolves as written."""

import importlib
import json
import pickle
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import mechmem
from mechmem import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
NAME = re.compile(r"(?<![\w\"'./-])mechmem(?:\.[A-Za-z_]\w*)+")


def _texts():
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        yield path.name, path.read_text()
    nb = json.loads((ROOT / "docs" / "tutorial.ipynb").read_text())
    yield "tutorial.ipynb", "\n".join("".join(c["source"]) for c in nb["cells"])


def _names() -> list[tuple[str, str]]:
    found = set()
    for where, text in _texts():
        # a name quoted as a string ("mechmem.sweep.weights", a file format tag) is not code
        for m in NAME.finditer(text):
            found.add((where, m.group(0).rstrip(".")))
    return sorted(found)


def _resolve(dotted: str) -> object:
    """What `import mechmem` then `mechmem.a.b.c` gives, importing a submodule only where an
    attribute is missing (as `import mechmem.a.b` would)."""
    parts = dotted.split(".")
    obj: object = importlib.import_module(parts[0])
    for i, part in enumerate(parts[1:], start=2):
        if not hasattr(obj, part):
            importlib.import_module(".".join(parts[:i]))
        obj = getattr(obj, part)
    return obj


def test_docs_name_at_least_the_ones_that_once_failed():
    names = {n for _, n in _names()}
    assert {"mechmem.train.preset", "mechmem.train.TrainingInterrupted",
            "mechmem.train.initial_model", "mechmem.sweep.SweepInterrupted"} <= names


@pytest.mark.parametrize(("where", "dotted"), _names())
def test_every_dotted_name_in_the_docs_resolves(where, dotted):
    _resolve(dotted)


def test_train_and_sweep_are_the_subpackages_and_callable():
    import mechmem.sweep.run
    import mechmem.train.loop

    for module, function in ((mechmem.train, mechmem.train.loop.train),
                             (mechmem.sweep, mechmem.sweep.run.sweep)):
        assert isinstance(module, types.ModuleType)
        assert sys.modules[module.__name__] is module
        assert callable(module) and module.__call__ is function
    from mechmem import sweep, train

    assert train is mechmem.train and sweep is mechmem.sweep
    assert mechmem.train.preset("full-inversion").weight_decay == 15.0
    assert issubclass(mechmem.train.TrainingInterrupted, KeyboardInterrupt)
    assert issubclass(mechmem.sweep.SweepInterrupted, KeyboardInterrupt)


def test_calling_the_subpackages_trains_and_sweeps(tmp_path):
    from mechmem import SweepConfig, sweep, train

    ckpt = train(TrainConfig(p=7, width=8, steps=4, snapshot_every=None, device="cpu"))
    assert ckpt.step == 4 and len(ckpt.history["step"]) == 2
    result = sweep(SweepConfig(TrainConfig(p=7, width=8, steps=4, snapshot_every=None,
                                           device="cpu"),
                               axes=(("weight_decay", (0.0, 1.0)),)), out=tmp_path / "s")
    assert len(result.cells) == 2
    with pytest.raises(TypeError, match="config"):
        train("not a config")


def test_configs_and_functions_still_pickle():
    config = mechmem.train.preset("coexistence")
    assert pickle.loads(pickle.dumps(config)) == config
    assert pickle.loads(pickle.dumps(mechmem.train.train)) is mechmem.train.train
    assert pickle.loads(pickle.dumps(mechmem.sweep.sweep)) is mechmem.sweep.sweep


def test_report_resolves_without_being_imported_first_and_import_stays_light():
    code = ("import sys, mechmem; assert 'plotly' not in sys.modules; "
            "import mechmem.train, mechmem.sweep; assert 'plotly' not in sys.modules; "
            "print(mechmem.report.figures.__name__)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "figures"
    with pytest.raises(AttributeError, match="no attribute 'nonexistent'"):
        mechmem.nonexistent  # noqa: B018


def test_ray_backend_still_imports():
    pytest.importorskip("ray")
    module = importlib.import_module("mechmem.sweep.ray_backend")
    assert callable(module.run_on_ray)
