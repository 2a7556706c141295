"""Sweeps from Python: grid syntax and validation, batched cells against independent single runs,
the folder format, resuming, and the result API."""

import json
import math

import pytest
import torch

from mechmem import TrainConfig, analyze, train
from mechmem.analysis import accuracies
from mechmem.metrics import METRICS
from mechmem.sweep import (
    SweepConfig,
    cell_id,
    load_sweep,
    plan_chunks,
    sweep,
    sweep_preset,
    train_chunk,
)
from mechmem.sweep.grid import linspace, parse_values
from mechmem.train import HISTORY_KEYS

pytestmark = pytest.mark.usefixtures("one_thread")

BASE = TrainConfig(p=23, width=32, steps=60, eval_every=5, snapshot_every=None, device="cpu")
SMALL = SweepConfig(BASE.replace(weight_decay=1.0), axes=(
    ("weight_decay", (0.0, 2.0)), ("corrupt_frac", (0.0, 0.3)), ("train_frac", (0.4, 0.6))))


@pytest.mark.parametrize(("text", "convert", "values"), [
    ("0,5,15,20", float, (0.0, 5.0, 15.0, 20.0)),
    ("0.1:0.9:17", float, linspace(0.1, 0.9, 17)),
    ("0.1:0.9:5", float, (0.1, 0.3, 0.5, 0.7, 0.9)),
    ("1:4:4", int, (1, 2, 3, 4)),
    ("7", int, (7,)),
    ("quad,relu", str, ("quad", "relu")),
])
def test_axis_value_syntax(text, convert, values):
    assert parse_values(text, convert) == values


def test_linspace_gives_round_values():
    assert linspace(0.1, 0.9, 17)[1] == 0.15 and linspace(0.0, 0.9, 19)[-1] == 0.9


@pytest.mark.parametrize(("axes", "message"), [
    ((("corrupt_frac", (0.1, 1.2)),), r"corrupt_frac=1.2: `corrupt_frac` \(xi\) must lie"),
    ((("banana", (1, 2)),), "Unknown sweep axis 'banana'"),
    ((("name", ("a", "b")),), "Unknown sweep axis 'name'"),
    ((("weight_decay", ()),), "needs a non-empty list"),
    ((("weight_decay", (1.0, 1.0)),), "repeats a value"),
    ((("p", (11, 12)), ("op", ("mul",))), "p=12, op='mul': `p` must be prime for mul"),
])
def test_invalid_grids_are_refused_with_the_cell(axes, message):
    with pytest.raises(ValueError, match=message):
        SweepConfig(BASE, axes=axes)


def test_presets_span_the_papers_grids():
    fig3a = sweep_preset("fig3a")
    assert len(fig3a.cells()) == 4 * 19 * 17 == 1292
    assert fig3a.base.steps == 2000 and (fig3a.base.p, fig3a.base.width) == (97, 500)
    scripts = sweep_preset("fig3a", grid="scripts")
    assert len(scripts.cells()) == 1156 and scripts.base.seeding == "scripts"
    assert dict(scripts.axes)["corrupt_frac"][0] == 0.1
    assert dict(fig3a.axes)["corrupt_frac"][0] == 0.0
    bn = sorted({(c.batch_size, c.steps, c.lr) for c in sweep_preset("batchnorm").cells()})
    assert [b[:2] for b in bn] == [(8, 64000), (32, 16000), (64, 8000), (256, 2000)]
    assert [b[2] for b in bn] == pytest.approx([0.01 * math.sqrt(b / 256) for b in (8, 32, 64,
                                                                                   256)])
    assert {c.batch_size for c in sweep_preset("minibatch").cells()} == {8, 256, "full"}
    assert {c.op for c in sweep_preset("mul").cells()} == {"mul"}
    assert fig3a.panel_axis() == "weight_decay"
    assert sweep_preset("fig3b").panel_axis() == "dropout"


def test_cells_that_cannot_share_a_step_get_their_own_chunks():
    sc = SweepConfig(BASE, axes=(("width", (16, 32)), ("train_frac", (0.2, 0.25, 0.6)),
                                 ("weight_decay", (0.0, 1.0))))
    chunks = plan_chunks(sc.cells(), torch.device("cpu"))
    cells = sc.cells()
    assert sorted(i for ch in chunks for i in ch.cells) == list(range(len(cells)))
    for ch in chunks:
        assert len({cells[i].width for i in ch.cells}) == 1
        sizes = [round(cells[i].train_frac * 23 * 23) for i in ch.cells]
        assert min(sizes) >= 0.8 * max(sizes)  # padding stays bounded
    # alpha 0.2 and 0.25 share a chunk (padded), 0.6 does not: per width, two chunks.
    assert len(chunks) == 4
    assert len(plan_chunks(sc.cells(), torch.device("cpu"), chunk_size=1)) == len(cells)


def _single(config):
    return train(config)


# Cells that exercise every per-model difference: data fraction (padding), corruption, seed,
# weight decay, learning rate, dropout; and a minibatch + BatchNorm group, and the paper seeding.
EQUIVALENCE = [
    SweepConfig(BASE, axes=(("train_frac", (0.45, 0.55)), ("corrupt_frac", (0.0, 0.3)),
                            ("weight_decay", (0.0, 2.0)))),
    SweepConfig(BASE.replace(corrupt_frac=0.2), axes=(("lr", (0.01, 0.02)),
                                                      ("dropout", (0.0, 0.3)),
                                                      ("seed", (0, 1)))),
    SweepConfig(BASE.replace(norm="batchnorm", batch_size=64, corrupt_frac=0.2),
                axes=(("seeding", ("mechmem", "paper", "scripts")),
                      ("weight_decay", (0.0, 1.0)))),
]


@pytest.mark.parametrize("sc", EQUIVALENCE, ids=["data-wd", "lr-dropout-seed", "bn-seedings"])
def test_batched_cells_follow_independent_single_runs(sc):
    cells = sc.cells()
    assert len(plan_chunks(cells, torch.device("cpu"))) == 1  # one batched job
    records, _ = train_chunk(cells)
    for cfg, rec in zip(cells, records, strict=True):
        ref = _single(cfg)
        h, r = rec["history"], ref.history
        assert h["step"] == r["step"]
        # The first steps: the same losses to float tolerance.
        for k in ("train_loss", "test_loss"):
            torch.testing.assert_close(torch.tensor(h[k][:4]), torch.tensor(r[k][:4]),
                                       rtol=1e-4, atol=1e-7)
        for m in METRICS:
            a, b = rec["accuracy"][m], r[f"{m}_acc"][-1]
            assert (a is None and math.isnan(b)) or abs(a - b) <= 0.01, (m, a, b)
        assert rec["phase"] == analyze(ref).phase.phase
        assert rec["config"] == cfg.to_dict()


def test_sweep_folder_format_and_result_api(tmp_path):
    out = tmp_path / "sw"
    result = sweep(SMALL, out=out, save_weights=True)
    assert result.complete and len(result.cells) == 8
    header = json.loads((out / "sweep.json").read_text())
    assert header["format"] == "mechmem.sweep" and header["version"] == 1
    assert header["mechmem_version"] and header["config"] == SMALL.to_dict()
    assert header["cells"] == [cell_id(c) for c in SMALL.cells()]
    lines = (out / "cells.jsonl").read_text().splitlines()
    assert len(lines) == 8
    cell = json.loads(lines[0])
    for key in ("id", "config", "phase", "accuracy", "test_acc_peak", "test_acc_peak_step",
                "ipr", "weight_norms", "history", "loss", "chunk"):
        assert key in cell, key
    assert set(cell["accuracy"]) == set(METRICS)
    assert set(cell["history"]) == set(HISTORY_KEYS)
    assert len(cell["ipr"]["neurons"]) == 32
    # The config has the keys of `mechmem analyze --json`'s config (a TrainConfig dict).
    assert set(cell["config"]) == set(BASE.to_dict())
    peak = max(cell["history"]["test_acc"])
    assert cell["test_acc_peak"] == peak
    assert cell["history"]["test_acc"][cell["history"]["step"].index(
        cell["test_acc_peak_step"])] == peak
    # Few weight files, not one per cell.
    assert 1 <= len(list((out / "weights").iterdir())) < 8

    c = result.cell(weight_decay=2.0, corrupt_frac=0.3, train_frac=0.6)
    assert c["config"]["weight_decay"] == 2.0 and c["config"]["corrupt_frac"] == 0.3
    with pytest.raises(ValueError, match="name .*train_frac"):
        result.cell(weight_decay=2.0, corrupt_frac=0.3)
    with pytest.raises(KeyError, match="No finished cell"):
        result.cell(weight_decay=7.0, corrupt_frac=0.3, train_frac=0.6)
    grid = result.phase_grid()
    assert grid.panel == "weight_decay" and grid.values.shape == (2, 2, 2)
    assert grid.x_values == (0.4, 0.6) and grid.y_values == (0.0, 0.3)
    assert grid.values[1, 1, 1] == c["phase"] and grid.ids[1, 1, 1] == c["id"]
    test = result.grid("test")
    assert test.values[1, 1, 1] == c["accuracy"]["test"]
    with pytest.raises(ValueError, match="also varies weight_decay"):
        result.grid("test", panel=None)

    # From a phase-diagram cell straight to its analysis.
    ckpt = result.checkpoint(weight_decay=2.0, corrupt_frac=0.3, train_frac=0.6)
    acc = accuracies(ckpt.model, ckpt.dataset)
    for m in METRICS:
        assert abs(getattr(acc, m) - c["accuracy"][m]) < 1e-9, m
    assert analyze(ckpt).phase.phase == c["phase"]


def test_to_pandas_or_a_sentence_naming_pandas(tmp_path):
    result = sweep(SweepConfig(BASE.replace(steps=5), axes=(("seed", (0, 1)),)),
                   out=tmp_path / "s")
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(ImportError, match="pip install pandas"):
            result.to_pandas()
    else:
        df = result.to_pandas()
        assert list(df["seed"]) == [0, 1] and "acc_test" in df and "phase" in df


def test_existing_sweeps_are_kept_resumed_or_replaced_only_when_asked(tmp_path):
    out = tmp_path / "sw"
    first = sweep(SMALL, out=out)
    before = (out / "cells.jsonl").read_bytes()
    with pytest.raises(FileExistsError, match="--resume to continue it or --force"):
        sweep(SMALL, out=out)
    # Resuming a finished sweep trains nothing and changes nothing.
    again = sweep(None, out=out, resume=True)
    assert (out / "cells.jsonl").read_bytes() == before and again.cells == first.cells
    other = SweepConfig(BASE, axes=(("seed", (0, 1)),))
    with pytest.raises(ValueError, match="another sweep's grid"):
        sweep(other, out=out, resume=True)
    replaced = sweep(other, out=out, overwrite=True)
    assert len(replaced.cells) == 2 and load_sweep(out).n_cells == 2


def test_a_partial_sweep_resumes_to_the_cells_of_an_uninterrupted_one(tmp_path):
    sc = SweepConfig(SMALL.base, SMALL.axes, chunk_size=2)
    full = sweep(sc, out=tmp_path / "full")
    part = tmp_path / "part"
    sweep(sc, out=part)
    lines = (part / "cells.jsonl").read_text().splitlines()
    (part / "cells.jsonl").write_text("\n".join(lines[:3]) + "\n")  # as if stopped after 3
    assert load_sweep(part).n_cells == 8 and len(load_sweep(part).cells) == 3
    resumed = sweep(None, out=part, resume=True)
    assert resumed.cells == full.cells  # bit-identical records on CPU


def test_runs_too_big_for_memory_are_refused_before_anything_is_written(tmp_path):
    huge = SweepConfig(TrainConfig(p=3000, device="cpu"), axes=(("seed", (0, 1)),))
    with pytest.raises(MemoryError, match=r"needs about [\d.]+ GB of cpu memory but only"):
        sweep(huge, out=tmp_path / "huge")
    assert not (tmp_path / "huge").exists()
    with pytest.raises(MemoryError, match="needs about"):
        train(TrainConfig(p=3000, device="cpu"))


@pytest.mark.parametrize(("make", "message"), [
    (lambda p: p.mkdir(), "is not a sweep folder"),
    (lambda p: (p.mkdir(), (p / "sweep.json").write_text("{trunc")), "not valid JSON"),
    (lambda p: (p.mkdir(), (p / "sweep.json").write_text('{"format": "x"}')),
     "not a mechmem sweep file"),
])
def test_damaged_or_foreign_folders_are_refused_with_a_sentence(tmp_path, make, message):
    make(tmp_path / "d")
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        load_sweep(tmp_path / "d")
