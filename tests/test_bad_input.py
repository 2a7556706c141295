"""Bad input and faults end in one sentence and lose no work: huge moduli, unwritable and locked
destinations, damaged checkpoints and sweep folders, wrong types, hostile pickles."""

import json
import math
import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from mechmem import DatasetSpec, TrainConfig, load_checkpoint, save_checkpoint, train
from mechmem._files import exclusive, lock_path, remove_stale_temporaries
from mechmem.data import MAX_SEED, is_prime
from mechmem.sweep import SweepConfig, load_sweep
from mechmem.sweep import sweep as run_sweep
from mechmem.sweep.config import MAX_CELLS
from mechmem.sweep.folder import LOCK_FILE, writing
from mechmem.sweep.grid import parse_values
from mechmem.train.autograd import make_group
from mechmem.train.loop import _Run

pytestmark = pytest.mark.usefixtures("one_thread")

TINY = TrainConfig(p=5, width=4, steps=4, eval_every=2, snapshot_every=2, device="cpu")
GRID = SweepConfig(TINY.replace(snapshot_every=None), axes=(("weight_decay", (0.0, 1.0)),),
                   chunk_size=1)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    train(TINY, out=path)
    return path


@pytest.fixture
def sweep_folder(tmp_path):
    run_sweep(GRID, out=tmp_path / "sw")
    return tmp_path / "sw"


def _edited(src: Path, dst: Path, edit) -> Path:
    payload = torch.load(src, weights_only=True)
    edit(payload)
    torch.save(payload, dst)
    return dst


# 1. A huge prime p: primality in time of its digits, the memory check before any allocation.

def test_primality_agrees_with_trial_division_and_answers_huge_numbers():
    trial = [n for n in range(2000) if n > 1 and all(n % d for d in range(2, math.isqrt(n) + 1))]
    assert [n for n in range(2000) if is_prime(n)] == trial
    assert is_prime(2**61 - 1) and is_prime(2**127 - 1)
    # composites that fool weaker tests: Carmichael numbers, strong pseudoprimes to 2, 3, 5, 7
    assert not any(is_prime(n) for n in (561, 41041, 3215031751, 2**61 + 1, (2**31 - 1) ** 2))


def test_a_huge_prime_p_is_refused_by_the_memory_check(tmp_path):
    config = TrainConfig(op="mul", p=2**61 - 1, width=8, device="cpu")
    with pytest.raises(MemoryError, match="this run needs about .* choose a smaller p") as e:
        train(config, out=tmp_path / "huge.pt")
    assert re.search(r"about \d\.?\d*e\+\d+ GB", str(e.value))  # not dozens of digits
    assert not (tmp_path / "huge.pt").exists()


def test_a_checkpoint_whose_spec_names_a_huge_p_is_refused_at_once(ckpt_file, tmp_path):
    def edit(d):
        for spec in (d["dataset"]["spec"], d["model_config"], d["train_config"]):
            spec["p"] = 2**61 - 1
        d["dataset"]["spec"]["op"] = d["train_config"]["op"] = "mul"

    path = _edited(ckpt_file, tmp_path / "huge.pt", edit)
    with pytest.raises(ValueError, match=r"huge.pt: damaged .* training indices, but its spec"):
        load_checkpoint(path)


# 2. An unwritable destination is found before any work; a run whose write fails is kept.

def _unwritable_folder() -> Path:
    if not Path("/proc").is_dir():
        pytest.skip("needs /proc, a folder no one can create files in")
    return Path("/proc")


def test_an_unwritable_destination_is_refused_before_training():
    folder = _unwritable_folder()
    # 10^7 steps would take hours: only a check before training can answer.
    with pytest.raises(PermissionError, match=r"Cannot write /proc/new.pt: its folder /proc is "
                                              "not writable"):
        train(TINY.replace(steps=10**7), out=folder / "new.pt")


def test_a_finished_run_whose_write_fails_is_saved_elsewhere_and_named(tmp_path):
    folder = tmp_path / "gone"
    folder.mkdir()
    config = TINY
    from mechmem import make_dataset
    from mechmem.train import initial_model

    run = _Run(config=config, dataset=make_dataset(config.dataset_spec()),
               model=initial_model(config), meta={}, out=folder / "run.pt", every=None)
    group = make_group([config], models=[run.model], datasets=[run.dataset])
    folder.rmdir()  # the destination disappears after the checks, before the final write
    with pytest.raises(OSError, match=r"Could not write .*run.pt at step 0 .*; the run is "
                                      r"saved in (\S+): move it") as e:
        run.save(0, group)
    spare = Path(str(e.value).split("saved in ")[1].split(":")[0])
    try:
        assert load_checkpoint(spare).step == 0
    finally:
        spare.unlink()


# 3. One writer per checkpoint path and per sweep folder; a killed holder leaves no lock.

def test_a_second_writer_of_a_checkpoint_path_is_refused_naming_the_holder(tmp_path):
    out = tmp_path / "run.pt"
    with exclusive(lock_path(out), str(out)):
        with pytest.raises(BlockingIOError, match=rf"run.pt is in use by mechmem pid "
                                                  rf"{os.getpid()} on "):
            train(TINY, out=out)
    assert not out.exists()
    train(TINY, out=out)  # free again once released
    assert not lock_path(out).exists()


def test_a_second_writer_of_a_sweep_folder_is_refused_also_on_resume(sweep_folder):
    with writing(sweep_folder):
        for kwargs in ({"resume": True}, {"overwrite": True}):
            with pytest.raises(BlockingIOError, match=rf"Sweep folder .*sw is in use by mechmem "
                                                      rf"pid {os.getpid()}"):
                run_sweep(GRID if "overwrite" in kwargs else None, out=sweep_folder, **kwargs)
    assert not (sweep_folder / LOCK_FILE).exists()
    assert len(load_sweep(sweep_folder).cells) == 2


def test_a_killed_holder_leaves_no_lock_behind(tmp_path):
    lock = tmp_path / ".x.lock"
    code = textwrap.dedent(f"""
        import pathlib, time
        from mechmem._files import exclusive
        with exclusive(pathlib.Path({str(lock)!r}), "x"):
            print("held", flush=True)
            time.sleep(60)
    """)
    with subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}) as holder:
        try:
            assert holder.stdout.readline().strip() == "held"
            with pytest.raises(BlockingIOError, match=rf"x is in use by mechmem pid {holder.pid} "):
                with exclusive(lock, "x"):
                    pass
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait()
    with exclusive(lock, "x"):  # the kernel released it with the process
        assert lock.exists()


# 4. Every part of a checkpoint is checked at load, named in one line.

def _opt_shape(d):
    d["train_state"]["optimizer"]["exp_avg"][0] = torch.zeros(2, 2)


@pytest.mark.parametrize("edit, message", [
    (lambda d: d.update(snapshots=[1, 2]), "its snapshots are a list, not a mapping"),
    (lambda d: d["snapshots"].update(U=d["snapshots"]["U"][:, :1]),
     r"its snapshots\['U'\] is a tensor of shape \(3, 1, 5\), not a tensor of shape \(3, 4, 5\)"),
    (lambda d: d["snapshots"].update(Q=torch.zeros(2)),
     r"its snapshots\['Q'\] is a tensor of shape \(2,\), not a tensor with one row per snapshot"),
    (lambda d: d.update(train_state="oops"), "its train_state is a str 'oops', not a mapping"),
    (lambda d: d["train_state"].update(optimizer="zzz"),
     "its train_state optimizer is a str 'zzz', not a mapping"),
    (lambda d: d["train_state"]["optimizer"].update(exp_avg="zzz"),
     "its train_state optimizer exp_avg is a str 'zzz', not a list of 3 tensors"),
    (lambda d: d["train_config"].update(p=11), "its train_config gives the model p=11, but the "
                                               "model stored has p=5"),
    (lambda d: d["train_config"].update(seed=3), "its train_config gives the dataset seed=3"),
    (lambda d: d["train_config"].update(lr=-1.0), "its train_config is not valid: `lr` must be "
                                                  "finite and > 0"),
    (lambda d: d.update(history={"step": "abc"}), r"its history\['step'\] is a str 'abc'"),
    (lambda d: d.update(history=[0.5]), "its history is a list, not a mapping"),
    (lambda d: d.update(step=-1), "its step is -1, not a non-negative integer"),
    (lambda d: d.update(meta="x"), "its meta is a str, not a mapping"),
])
def test_a_damaged_part_is_named_at_load(ckpt_file, tmp_path, edit, message):
    path = _edited(ckpt_file, tmp_path / "bad.pt", edit)
    with pytest.raises(ValueError, match=r"bad.pt: damaged mechmem checkpoint: " + message):
        load_checkpoint(path)


def test_an_optimizer_state_of_other_shapes_is_named_before_training(ckpt_file, tmp_path):
    from mechmem.train import resume

    path = _edited(ckpt_file, tmp_path / "bad.pt", _opt_shape)
    with pytest.raises(ValueError, match=r"bad.pt: damaged mechmem checkpoint: its train_state "
                                         "optimizer does not fit the model"):
        resume(path, steps=10**7)


# 5, 6. Every sweep reader applies the same checks to sweep.json.

def _edit_header(folder: Path, edit) -> None:
    header = json.loads((folder / "sweep.json").read_text())
    edit(header)
    (folder / "sweep.json").write_text(json.dumps(header))


def test_a_chunk_plan_naming_a_cell_outside_the_grid_is_refused(sweep_folder):
    _edit_header(sweep_folder, lambda h: h["chunks"].__setitem__(0, [99]))
    for read in (lambda: run_sweep(out=sweep_folder, resume=True),
                 lambda: load_sweep(sweep_folder)):
        with pytest.raises(ValueError, match="its chunk plan names cell 99, outside the grid "
                                             "of 2 cells"):
            read()


def test_a_chunk_plan_missing_a_cell_is_refused(sweep_folder):
    _edit_header(sweep_folder, lambda h: h["chunks"].pop())
    with pytest.raises(ValueError, match="does not name each of the 2 cells exactly once"):
        load_sweep(sweep_folder)


def test_an_edited_grid_is_refused_by_every_reader(sweep_folder):
    _edit_header(sweep_folder, lambda h: h["config"]["axes"][0].__setitem__(1, [0.0, 2.0]))
    for read in (lambda: run_sweep(out=sweep_folder, resume=True),
                 lambda: load_sweep(sweep_folder)):
        with pytest.raises(ValueError, match="its cell ids do not match its own grid"):
            read()


# 7. The seed is bounded in the config.

@pytest.mark.parametrize("seed", [-1, MAX_SEED + 1, 2**64])
def test_the_seed_is_bounded(seed):
    for make in (lambda: TrainConfig(seed=seed), lambda: DatasetSpec(seed=seed)):
        with pytest.raises(ValueError, match=rf"`seed` must be an integer in \[0, {MAX_SEED}\], "
                                             rf"got {seed}"):
            make()
    assert TrainConfig(seed=MAX_SEED).dataset_spec().seed == MAX_SEED


# 8. A checkpoint cut anywhere says "truncated or corrupt".

def test_a_checkpoint_cut_at_any_point_says_truncated_or_corrupt(ckpt_file, tmp_path):
    raw = ckpt_file.read_bytes()
    cuts = sorted(set(range(0, 64)) | set(range(0, len(raw), 97)) | set(range(len(raw) - 64,
                                                                             len(raw))))
    for n in cuts:
        (tmp_path / "cut.pt").write_bytes(raw[:n])
        with pytest.raises(ValueError, match="cut.pt: truncated or corrupt checkpoint file"):
            load_checkpoint(tmp_path / "cut.pt")


# 9. Wrong types at the public boundary; NaN and infinities in every float field.

_FLOAT_FIELDS = ("train_frac", "corrupt_frac", "dropout", "init_scale", "lr", "eps",
                 "weight_decay")


@pytest.mark.parametrize("field", _FLOAT_FIELDS)
@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_every_float_field_refuses_nan_and_infinities(field, value):
    with pytest.raises(ValueError, match=rf"`{field}` must be finite, got {value}"):
        TrainConfig(**{field: value})


@pytest.mark.parametrize("family", ["mlp", "mlp3", "transformer"])
@pytest.mark.parametrize("field", ["dropout", "init_scale"])
def test_model_configs_refuse_nan_and_infinities(family, field):
    from mechmem.models.families import FAMILIES

    config_cls = FAMILIES[family][0]
    for value in (math.nan, math.inf):
        with pytest.raises(ValueError, match=rf"`{field}` must be finite, got {value}"):
            config_cls(**{field: value})


def test_betas_refuse_nan():
    with pytest.raises(ValueError, match=r"`betas` must be finite, got \(nan, 0.9\)"):
        TrainConfig(betas=(math.nan, 0.9))


# The tests run mechmem under jaxtyping's beartype hook, which would answer a wrong type before
# mechmem's own checks do: those are run where users meet them, in a plain interpreter.
_WRONG_TYPES = {
    'mechmem.train("p=23")': ("TypeError", "`config` must be a TrainConfig .* got str 'p=23'"),
    'mechmem.train({"p": 23})': ("TypeError", "`config` must be a TrainConfig .* got dict"),
    'sweep("x", out="unused")': ("TypeError", "`config` must be a SweepConfig .* got str 'x'"),
    'sweep(mechmem.TrainConfig(p=7), out="unused")':
        ("TypeError", "got a TrainConfig: wrap it as SweepConfig"),
    'sweep(SweepConfig(), out=3)': ("TypeError", "`out` must be a folder path"),
    'mechmem.TrainConfig(train_frac="0.5")':
        ("TypeError", "`train_frac` must be a number, got str '0.5'"),
    'mechmem.TrainConfig(p=True)': ("TypeError", "`p` must be an integer, got bool True"),
    'mechmem.TrainConfig(width=3.0)':
        ("TypeError", "`width` must be an integer or None, got float 3.0"),
    'mechmem.TrainConfig(bias=1)': ("TypeError", "`bias` must be True or False, got int 1"),
    'mechmem.TrainConfig(betas=(0.9, "x"))':
        ("TypeError", "`betas` must be a tuple of 2 numbers"),
    'mechmem.TrainConfig.from_dict("p=7")':
        ("TypeError", "rebuilt from a mapping of field names, got str"),
    'mechmem.DatasetSpec(p="7")': ("TypeError", "`p` must be an integer, got str '7'"),
    'SweepConfig(axes=5)': ("TypeError", "`axes` must be a sequence of .field, values. pairs"),
    'SweepConfig(chunk_size="4")':
        ("TypeError", "`chunk_size` must be an integer or None, got str '4'"),
    'resume(5)': ("TypeError", "`path` must be a checkpoint path"),
    'mechmem.load_checkpoint(5)': ("TypeError", "`path` must be a checkpoint path"),
    'mechmem.save_checkpoint("x", "unused.pt")': ("TypeError", "`ckpt` must be a Checkpoint"),
    'mechmem.load_sweep(5)': ("TypeError", "`path` must be a sweep folder path"),
    'mechmem.train(None, out=5)': ("TypeError", "The checkpoint path must be a string or a "
                                                "path, got int 5"),
}


def test_wrong_types_at_the_public_boundary_name_the_argument(tmp_path):
    code = textwrap.dedent("""
        import json, sys
        import mechmem
        from mechmem.sweep import SweepConfig
        from mechmem.sweep import sweep
        from mechmem.train import resume
        out = {}
        for expr in json.loads(sys.argv[1]):
            try:
                eval(expr)
                out[expr] = ["accepted", ""]
            except Exception as e:
                out[expr] = [type(e).__name__, str(e)]
        print(json.dumps(out))
    """)
    done = subprocess.run([sys.executable, "-c", code, json.dumps(list(_WRONG_TYPES))],
                          capture_output=True, text=True, cwd=tmp_path, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    got = json.loads(done.stdout)
    for expr, (kind, message) in _WRONG_TYPES.items():
        assert got[expr][0] == kind, (expr, got[expr])
        assert re.search(message, got[expr][1]), (expr, got[expr])


# 10 and the damaged line: named by folder, line and key; --resume trains that cell again.

def _edit_line(folder: Path, k: int, edit) -> None:
    lines = (folder / "cells.jsonl").read_text().splitlines()
    lines[k] = edit(lines[k])
    (folder / "cells.jsonl").write_text("\n".join(lines) + "\n")


def _without(key):
    def edit(line):
        cell = json.loads(line)
        parts = key.split(".")
        del (cell[parts[0]] if len(parts) == 2 else cell)[parts[-1]]
        return json.dumps(cell)
    return edit


@pytest.mark.parametrize("edit, message", [
    (_without("accuracy"), "the cell record lacks the key 'accuracy'"),
    (_without("accuracy.test"), "the cell record lacks the key 'accuracy.test'"),
    (_without("ipr.mean"), "the cell record lacks the key 'ipr.mean'"),
    (lambda line: line[:40], r"not valid JSON \(cut short or damaged\)"),
    (lambda line: "[1, 2]", "holds a JSON list, not a cell record"),
])
def test_a_damaged_cell_line_is_named_and_retrained_on_resume(sweep_folder, edit, message):
    before = load_sweep(sweep_folder).cells
    _edit_line(sweep_folder, 1, edit)
    with pytest.raises(ValueError, match=rf"sw: cells.jsonl line 2: {message}; mechmem sweep "
                                         "--resume .* trains that cell again"):
        load_sweep(sweep_folder)
    with pytest.warns(UserWarning, match=rf"cells.jsonl line 2: {message}; that cell is trained "
                                         "again"):
        after = run_sweep(out=sweep_folder, resume=True).cells
    assert [c["accuracy"] for c in after] == [c["accuracy"] for c in before]
    assert len((sweep_folder / "cells.jsonl").read_text().splitlines()) == 2


# 11. --trust-pickled-code trusts TransformerLens's config class and nothing else.

class _Marker:
    """Pickles as a call of Path.touch: the file appears only if the pickle's code runs."""

    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_a_hostile_file_is_refused_even_with_trust_pickled_code(tmp_path):
    tl = pytest.importorskip("transformer_lens")
    from mechmem.interop import load_transformer_lens

    cfg = tl.HookedTransformerConfig(n_layers=1, d_model=8, n_ctx=3, d_head=4, d_vocab=6,
                                     act_fn="relu")
    ran = tmp_path / "ran"
    torch.save({"model": {}, "config": cfg, "extra": _Marker(ran)}, tmp_path / "evil.pt")
    with pytest.raises(ValueError, match="refused to load, even trusting TransformerLens's "
                                         r"pickled config: it also asks for the Python object \S+, "
                                         "which no TransformerLens save holds; nothing in it "
                                         "was run"):
        load_transformer_lens(tmp_path / "evil.pt", trust_pickled_code=True)
    assert not ran.exists()


def test_a_real_pickled_transformer_lens_save_opens_with_the_flag(tmp_path):
    tl = pytest.importorskip("transformer_lens")
    from mechmem.interop import load_transformer_lens

    cfg = tl.HookedTransformerConfig(n_layers=1, n_heads=2, d_model=8, d_head=4, d_mlp=16,
                                     act_fn="relu", normalization_type=None, d_vocab=6,
                                     d_vocab_out=5, n_ctx=3, device="cpu", seed=0)
    with pytest.warns(DeprecationWarning):
        model = tl.HookedTransformer(cfg)
    torch.save({"model": model.state_dict(), "config": model.cfg,
                "train_losses": [1.0, 0.5], "test_losses": [1.1, 0.9]}, tmp_path / "demo.pth")
    with pytest.raises(ValueError, match="pickles TransformerLens's HookedTransformerConfig"):
        load_transformer_lens(tmp_path / "demo.pth")
    run = load_transformer_lens(tmp_path / "demo.pth", trust_pickled_code=True)
    assert run.history["train_loss"] == [1.0, 0.5]
    for k, v in model.state_dict().items():
        assert torch.equal(run.model.state_dict()[k], v)


# Also seen: stale temporaries, absurd grid sizes.

def test_stale_temporaries_of_a_target_are_removed_on_its_next_write(ckpt_file, tmp_path):
    out = tmp_path / "run.pt"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True).stdout.strip()
    stale = tmp_path / f".run.pt.{dead}.k3j2x9.tmp"
    live = tmp_path / f".run.pt.{os.getpid()}.a8b7c6.tmp"
    other = tmp_path / f".other.pt.{dead}.k3j2x9.tmp"
    for f in (stale, live, other):
        f.write_bytes(b"partial")
    save_checkpoint(load_checkpoint(ckpt_file), out)
    assert not stale.exists() and live.exists() and other.exists()
    assert remove_stale_temporaries(tmp_path / "other.pt") == [other]


def test_an_absurd_grid_is_refused_with_its_size_before_validation():
    axes = (("seed", tuple(range(1000))), ("weight_decay", tuple(float(x) for x in range(1000))))
    with pytest.raises(ValueError, match=rf"The grid has 1,000,000 cells \(1000 x 1000\), more "
                                         rf"than a sweep takes \(at most {MAX_CELLS:,}\)"):
        SweepConfig(TINY, axes=axes)
    with pytest.raises(ValueError, match="A range of 1000000000 values is more than"):
        parse_values("0:1:1000000000", float)


def test_an_invalid_cell_says_which_of_how_many():
    with pytest.raises(ValueError, match=r"Sweep cell p=12: .* \(cell 2 of 2\)"):
        SweepConfig(TINY.replace(op="mul"), axes=(("p", (11, 12)),))
