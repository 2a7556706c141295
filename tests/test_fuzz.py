"""Property-based tests: arbitrary config values, axis texts and damaged files end in a builtin
exception with a sentence (at the CLI: one line, exit 2), never another exception or a hang."""

import json
import math
import shutil

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mechmem import DatasetSpec, TrainConfig, load_checkpoint, train
from mechmem.cli import main
from mechmem.sweep import SweepConfig, load_sweep
from mechmem.sweep import sweep as run_sweep
from mechmem.sweep.folder import read_cells, read_header
from mechmem.sweep.grid import parse_values

pytestmark = pytest.mark.usefixtures("one_thread")

# Few examples each, no per-example deadline (the machine is shared): seconds per test.
FAST = settings(max_examples=60, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow])

TINY = TrainConfig(p=5, width=4, steps=4, eval_every=2, snapshot_every=2, device="cpu")

# Values of every kind a caller or a file may put in a field.
ANY_VALUE = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.integers(-3, 300),
    st.floats(allow_nan=True, allow_infinity=True), st.floats(0, 1),
    st.text(max_size=12), st.sampled_from(["add", "mul", "full", "mlp", "transformer", "relu",
                                           "paper", "cuda", "ce", "sgd", "layernorm"]),
    st.lists(st.floats(-1, 2), max_size=3), st.tuples(st.floats(0, 1), st.floats(0, 1)),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_FIELDS = [f for f in TrainConfig.__dataclass_fields__ if f != "device"]


def _is_sentence(e: BaseException) -> bool:
    return isinstance(e, TypeError | ValueError) and len(str(e).strip()) > 10


@FAST
@given(st.dictionaries(st.sampled_from(_FIELDS), ANY_VALUE, max_size=4))
def test_train_config_takes_anything_and_answers_in_a_sentence(fields):
    try:
        config = TrainConfig(**fields)
    except Exception as e:  # noqa: BLE001  (the property: which exceptions come out)
        assert _is_sentence(e), repr(e)
        return
    for v in (config.lr, config.eps, config.weight_decay, config.init_scale, config.train_frac):
        assert math.isfinite(v)
    assert TrainConfig.from_dict(config.to_dict()) == config


_FLOATS = ("train_frac", "corrupt_frac", "dropout", "init_scale", "lr", "eps", "weight_decay")


@FAST
@given(st.sampled_from(_FLOATS), st.floats(allow_nan=True, allow_infinity=True))
def test_float_fields_hold_only_finite_numbers(field, value):
    try:
        config = TrainConfig(**{field: value})
    except ValueError as e:
        assert f"`{field}`" in str(e), str(e)
        return
    assert math.isfinite(getattr(config, field))


@FAST
@given(st.dictionaries(st.sampled_from(list(DatasetSpec.__dataclass_fields__)), ANY_VALUE,
                       max_size=4))
def test_dataset_spec_takes_anything_and_answers_in_a_sentence(fields):
    try:
        DatasetSpec(**fields)
    except Exception as e:  # noqa: BLE001
        assert _is_sentence(e), repr(e)


@FAST
@given(st.text(alphabet="0123456789.:,-+e inf", max_size=16), st.sampled_from([int, float]))
def test_axis_text_parses_or_answers_in_a_sentence(text, convert):
    try:
        values = parse_values(text, convert)
    except ValueError as e:
        assert len(str(e)) > 10
        return
    assert values and all(isinstance(v, convert) for v in values)


@FAST
@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=2), st.integers(1, 50))
def test_a_range_has_its_count_and_ends(ends, count):
    start, stop = ends[0], ends[-1]
    text = f"{start!r}:{stop!r}:{count}"
    values = parse_values(text, float)
    assert len(values) == count
    assert math.isclose(values[0], start, abs_tol=1e-9)
    if count > 1:
        assert math.isclose(values[-1], stop, rel_tol=1e-9, abs_tol=1e-6)


JSON = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False),
              st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3),
                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=12)


@FAST
@given(st.one_of(JSON, st.fixed_dictionaries(
    {"base": st.one_of(JSON, st.just({"p": 7})), "axes": JSON})))
def test_a_sweep_config_from_any_json_answers_in_a_sentence(d):
    try:
        SweepConfig.from_dict(d)
    except Exception as e:  # noqa: BLE001
        assert _is_sentence(e), repr(e)


# Damaged files: real ones with bytes changed, cut or replaced.

@pytest.fixture(scope="module")
def ckpt_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "tiny.pt"
    train(TINY, out=path)
    return path


def _damage(raw: bytes, data: st.DataObject) -> bytes:
    how = data.draw(st.sampled_from(["flip", "cut", "splice", "random"]))
    if how == "random":
        return data.draw(st.binary(max_size=200))
    k = data.draw(st.integers(0, len(raw) - 1))
    if how == "cut":
        return raw[:k]
    if how == "flip":
        b = bytearray(raw)
        for _ in range(data.draw(st.integers(1, 8))):
            i = data.draw(st.integers(0, len(raw) - 1))
            b[i] = data.draw(st.integers(0, 255))
        return bytes(b)
    return raw[:k] + data.draw(st.binary(max_size=40)) + raw[k:]


@FAST
@given(st.data())
def test_a_damaged_checkpoint_loads_or_answers_in_a_sentence(ckpt_file, tmp_path, data):
    from mechmem.interop._files import load_any  # the reader of analyze, report and info

    path = tmp_path / "damaged.pt"
    path.write_bytes(_damage(ckpt_file.read_bytes(), data))
    for read in (load_checkpoint, load_any):
        try:
            read(path)
        except ValueError as e:
            assert str(e).startswith(f"{path}: "), str(e)


@pytest.fixture(scope="module")
def sweep_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz") / "sw"
    grid = SweepConfig(TINY.replace(snapshot_every=None), axes=(("weight_decay", (0.0, 1.0)),))
    run_sweep(grid, out=folder)
    return folder


@FAST
@given(st.sampled_from(["sweep.json", "cells.jsonl"]), st.data())
def test_a_damaged_sweep_folder_opens_or_answers_in_a_sentence(sweep_files, tmp_path, name,
                                                                 data):
    folder = tmp_path / "sw"
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(sweep_files, folder)
    raw = (folder / name).read_bytes()
    if data.draw(st.booleans()):
        damaged = _damage(raw, data)
    else:  # valid JSON, wrong contents
        lines = raw.decode().splitlines()
        k = data.draw(st.integers(0, len(lines) - 1))
        lines[k] = json.dumps(data.draw(JSON))
        damaged = "\n".join(lines).encode()
    (folder / name).write_bytes(damaged)
    for read in (read_header, read_cells, load_sweep):
        try:
            read(folder)
        except (ValueError, FileNotFoundError) as e:
            assert str(e).startswith(str(folder)), str(e)


@settings(max_examples=15, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.data())
def test_the_cli_answers_a_damaged_file_in_one_line(ckpt_file, tmp_path, capsys, data):
    path = tmp_path / "damaged.pt"
    path.write_bytes(_damage(ckpt_file.read_bytes(), data))
    code = main(["info", str(path)])
    err = capsys.readouterr().err
    if code != 0:
        assert code == 2
        assert err.startswith("mechmem info: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err



_FLAGS = ("--seed", "--train-frac", "--corrupt-frac", "--lr", "--weight-decay", "--dropout",
          "--init-scale", "--eval-every", "--batch-size", "--eps")
FLAG_TEXT = st.one_of(st.text(alphabet="0123456789.-+eEinfa", max_size=24),
                      st.integers(-2**70, 2**70).map(str), st.floats().map(repr))


@settings(max_examples=30, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(st.sampled_from(_FLAGS), FLAG_TEXT)
def test_the_cli_answers_any_flag_value_in_one_line(tmp_path, capsys, flag, text):
    out = tmp_path / "run.pt"
    argv = ["train", "--p", "5", "--width", "4", "--steps", "0", "--device", "cpu", "--quiet",
            "--force", "-o", str(out), f"{flag}={text}"]
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's own refusals
        code = e.code
    err = capsys.readouterr().err
    assert code in (0, 2), (argv, code, err)
    if code == 2:
        assert err.count("\n") == 1 and ": error: " in err and "Traceback" not in err, err
    else:
        assert load_checkpoint(out).step == 0
