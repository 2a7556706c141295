"""The sweep report: its figures against the sweep's cells, the page, `mechmem report DIR`."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys

import plotly.graph_objects as go
import pytest

from mechmem import TrainConfig
from mechmem.analysis.phase import PHASES
from mechmem.cli import main
from mechmem.report import (
    PHASE_COLOURS,
    accuracy_heatmap_figure,
    ipr_heatmap_figure,
    phase_diagram_figure,
    render_sweep_report,
    sweep_figures,
    write_sweep_report,
)
from mechmem.sweep import SweepConfig, load_sweep, sweep

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTILE_NAME = "<script>alert(1)</script>"
WD, XI, ALPHA = (0.0, 1.0), (0.0, 0.3), (0.3, 0.6, 0.9)  # 3 columns, 2 rows: no transposing
LABELS = ["Generalization (xi = 0)", "Coexistence", "Partial inversion", "Full inversion",
          "Memorization", "Forgetting", "Confusion"]
TINY = {"p": 17, "width": 32, "steps": 100, "eval_every": 20, "snapshot_every": None,
        "device": "cpu"}


def figures_of(page: str) -> dict:
    block = re.search(r'<script type="application/json" id="mechmem-figures">(.*?)</script>',
                      page, flags=re.S)
    assert block is not None, "the page has no figure data block"
    return json.loads(block.group(1))


@pytest.fixture(scope="module")
def folder(tmp_path_factory, one_thread):
    """A tiny real sweep: weight decay panels x xi rows x alpha columns, with a hostile name."""
    out = tmp_path_factory.mktemp("sweep") / "grid"
    config = SweepConfig(TrainConfig(**TINY),
                         axes=(("weight_decay", WD), ("corrupt_frac", XI), ("train_frac", ALPHA)),
                         name=HOSTILE_NAME)
    sweep(config, out=out)
    return out


@pytest.fixture(scope="module")
def result(folder):
    return load_sweep(folder)


@pytest.fixture(scope="module")
def page(result):
    return render_sweep_report(result)


@pytest.fixture(scope="module")
def six(result):
    """The same sweep with its cells relabelled to cycle through all six phases."""
    cells = tuple({**c, "phase": PHASES[k % len(PHASES)]} for k, c in enumerate(result.cells))
    return dataclasses.replace(result, cells=cells)


@pytest.fixture(scope="module")
def unfinished(folder, tmp_path_factory):
    """The sweep with its last 5 cells not trained yet."""
    copy = tmp_path_factory.mktemp("unfinished") / "grid"
    shutil.copytree(folder, copy)
    lines = (copy / "cells.jsonl").read_text().splitlines(keepends=True)
    (copy / "cells.jsonl").write_text("".join(lines[:-5]))
    return load_sweep(copy)


def heatmaps(fig: go.Figure) -> list:
    return [t for t in fig.data if t.type == "heatmap"]


def colour_of(trace, z: float) -> str:
    """The colour a stepwise colour scale gives `z`: both stops around it must agree."""
    t = (z - trace.zmin) / (trace.zmax - trace.zmin)
    below = [c for s, c in trace.colorscale if s <= t]
    above = [c for s, c in trace.colorscale if s >= t]
    assert below[-1] == above[0], f"z = {z} sits on a colour boundary"
    return below[-1]


def every_position(result):
    for k, wd in enumerate(WD):
        for j, xi in enumerate(XI):
            for i, alpha in enumerate(ALPHA):
                yield (k, j, i), result.cell(weight_decay=wd, corrupt_frac=xi, train_frac=alpha)


def test_phase_diagram_draws_each_cell_in_its_phase_colour(six):
    fig = phase_diagram_figure(six)
    maps = heatmaps(fig)
    assert len(maps) == len(WD)
    assert [a.text for a in fig.layout.annotations] == ["weight_decay = 0.0",
                                                       "weight_decay = 1.0"]
    seen = set()
    for (k, j, i), cell in every_position(six):
        assert list(maps[k].x) == pytest.approx(ALPHA) and list(maps[k].y) == pytest.approx(XI)
        assert colour_of(maps[k], maps[k].z[j][i]) == PHASE_COLOURS[cell["phase"]]
        seen.add(cell["phase"])
    assert seen == set(PHASES)
    assert len(set(PHASE_COLOURS.values())) == len(PHASES)


def test_legend_names_every_phase_in_fixed_colours_even_where_absent(result, six):
    assert len({c["phase"] for c in result.cells}) < len(PHASES)  # the real sweep lacks some
    for r in (result, six):
        fig = phase_diagram_figure(r)
        legend = [t for t in fig.data if t.showlegend]
        assert [t.name for t in legend] == LABELS
        assert [t.marker.color for t in legend] == [PHASE_COLOURS[p] for p in PHASES]
    # A phase's colour does not depend on which phases a sweep holds.
    a, b = heatmaps(phase_diagram_figure(result))[0], heatmaps(phase_diagram_figure(six))[0]
    assert (a.zmin, a.zmax, a.colorscale) == (b.zmin, b.zmax, b.colorscale)
    memorized = PHASES.index("memorization")
    assert colour_of(a, memorized) == colour_of(b, memorized) == PHASE_COLOURS["memorization"]


def test_accuracy_and_ipr_heatmaps_carry_each_cells_numbers(result):
    figs = {m: accuracy_heatmap_figure(result, m) for m in ("train", "test")}
    figs["ipr"] = ipr_heatmap_figure(result)
    for metric, fig in figs.items():
        maps = heatmaps(fig)
        assert len(maps) == len(WD) and all(t.coloraxis == "coloraxis" for t in maps)
        for (k, j, i), cell in every_position(result):
            want = cell["ipr"]["mean"] if metric == "ipr" else cell["accuracy"][metric]
            assert maps[k].z[j][i] == pytest.approx(want, rel=1e-3), (metric, k, j, i)
            shown = (f"mean IPR {want:.3f}" if metric == "ipr"
                     else f"{metric} accuracy {100 * want:.1f}%")
            assert maps[k].text[j][i].split("<br>")[3:] == [
                shown, f"phase {LABELS[PHASES.index(cell['phase'])]}"]
    for metric in ("train", "test"):
        axis = figs[metric].layout.coloraxis
        assert (axis.cmin, axis.cmax) == (0.0, 1.0)
    # The two accuracies differ somewhere, so the test above could tell them apart.
    assert heatmaps(figs["train"])[0].z != heatmaps(figs["test"])[0].z


def test_hover_names_the_settings_phase_accuracies_and_ipr(result):
    fig = phase_diagram_figure(result)
    (k, j, i), cell = next(p for p in every_position(result) if p[0] == (1, 1, 2))
    text = heatmaps(fig)[k].text[j][i].split("<br>")
    acc = cell["accuracy"]
    assert text == [
        "weight_decay 1.0", "alpha 0.9", "xi 0.3",
        f"phase {LABELS[PHASES.index(cell['phase'])]}",
        f"train {100 * acc['train']:.1f}%, test {100 * acc['test']:.1f}%",
        f"mean IPR {cell['ipr']['mean']:.3f}",
    ]


def test_unknown_accuracy_metric_is_refused(result):
    with pytest.raises(ValueError, match="Unknown accuracy 'ipr'; choose one of train, test"):
        accuracy_heatmap_figure(result, "ipr")


def test_unfinished_sweep_leaves_missing_cells_blank_and_says_so(unfinished):
    assert len(unfinished.cells) == unfinished.n_cells - 5
    done = {c["id"] for c in unfinished.cells}
    grid = unfinished.grid("phase")
    for fig in sweep_figures(unfinished).values():
        for k, trace in enumerate(heatmaps(fig)):
            for j in range(len(XI)):
                for i in range(len(ALPHA)):
                    finished = grid.ids[k, j, i] in done
                    assert (trace.z[j][i] is not None) == finished
                    assert ("not finished" in trace.text[j][i]) != finished
    page = render_sweep_report(unfinished)
    note = re.search(r'<p class="missing" id="missing-cells">([^<]*)', page)
    assert note is not None and note.group(1).startswith("5 of 12 cells are not finished")
    assert "7 of 12 cells done (not finished)" in page
    assert re.search(r"not finished</td><td>5</td>", page)


def test_phase_counts_table_counts_every_phase(result, page):
    rows = dict(re.findall(r'<span class="swatch"[^>]*></span>([^<]+)</td><td>(\d+)</td>', page))
    assert list(rows) == LABELS
    for phase, label in zip(PHASES, LABELS, strict=True):
        assert int(rows[label]) == sum(c["phase"] == phase for c in result.cells)
    assert "12 of 12 cells done (finished)" in page and 'id="missing-cells"' not in page


def test_page_is_self_contained_with_every_figure(page):
    assert page.count("plotly.js v") == 1
    assert not re.search(r"<(script|img|link|iframe)[^>]*\s(src|href)=", page, flags=re.I)
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and "connect-src &#x27;none&#x27;" in csp.group(1)
    figures = figures_of(page)
    assert set(figures) == {"fig-phase-diagram", "fig-accuracy-train", "fig-accuracy-test",
                            "fig-ipr"}
    for key, spec in figures.items():
        assert re.search(f'<div class="plot" id="{key}"></div><figcaption>[^<]+</figcaption>',
                         page), key
        go.Figure(spec)  # plotly's own validation of what the page draws
    for axis in ("weight_decay", "corrupt_frac", "train_frac"):
        assert f"<td>{axis}</td>" in page


def test_hostile_sweep_name_is_escaped(result, page):
    assert result.config.name == HOSTILE_NAME
    assert HOSTILE_NAME not in page
    assert page.count("<script") == 4  # prelude, plotly.js, figure data, boot
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "alert(1)" not in json.dumps(figures_of(page))  # the name never enters a figure


def test_other_varying_axes_are_shown_at_their_first_value(tmp_path):
    config = SweepConfig(TrainConfig(**{**TINY, "steps": 40}), axes=(("weight_decay", (0.0, 1.0)),
                                                    ("seed", (3, 4)), ("train_frac", (0.4, 0.8))))
    result = sweep(config, out=tmp_path / "seeds")
    maps = heatmaps(accuracy_heatmap_figure(result, "test"))
    assert len(maps) == 2 and maps[0].y == (0.0,)  # xi is not swept: one row at its base value
    for k, wd in enumerate((0.0, 1.0)):
        want = [result.cell(weight_decay=wd, seed=3, train_frac=a)["accuracy"]["test"]
                for a in (0.4, 0.8)]
        assert list(maps[k].z[0]) == pytest.approx(want, rel=1e-3)
    page = render_sweep_report(result)
    assert "the figures show seed = 3 (the first value of each)" in page
    assert "fixed at 3 (first value)" in page


def test_sweep_without_a_panel_axis_draws_one_panel(tmp_path):
    config = SweepConfig(TrainConfig(**{**TINY, "steps": 40}), axes=(("corrupt_frac", (0.0, 0.2)),
                                                    ("train_frac", (0.5,))))
    fig = phase_diagram_figure(sweep(config, out=tmp_path / "one"))
    assert len(heatmaps(fig)) == 1 and not fig.layout.annotations
    assert heatmaps(fig)[0].text[1][0].split("<br>")[:2] == ["alpha 0.5", "xi 0.2"]


def test_write_sweep_report_is_atomic_and_never_overwrites_unasked(result, page, tmp_path):
    out = tmp_path / "r.html"
    assert write_sweep_report(result, out) == out
    assert out.read_text(encoding="utf-8") == page  # rendering is deterministic
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match=r"exists; pass --force \(overwrite=True"):
        write_sweep_report(result, out)
    assert out.read_text() == "keep me"
    write_sweep_report(result, out, overwrite=True)
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert sorted(os.listdir(tmp_path)) == ["r.html"]  # no temporary file left behind


def test_importing_mechmem_sweep_does_not_import_plotly():
    code = ("import sys, mechmem.sweep; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'plotly'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# `mechmem report DIR`


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("mechmem report: error: "), err
    return err


def test_cli_writes_report_html_in_the_folder_and_respects_force(folder, tmp_path, capsys):
    copy = tmp_path / "grid"
    shutil.copytree(folder, copy)
    before = sorted(os.listdir(copy))
    assert main(["report", str(copy)]) == 0
    out = copy / "report.html"
    assert capsys.readouterr().out.strip() == str(out)
    assert "mechmem sweep report" in out.read_text(encoding="utf-8")
    assert sorted(os.listdir(copy)) == sorted([*before, "report.html"])

    out.write_text("keep me")
    assert main(["report", str(copy)]) == 2
    assert "exists; pass --force" in one_error_line(capsys)
    assert out.read_text() == "keep me"
    assert main(["report", str(copy), "--force"]) == 0
    assert "fig-phase-diagram" in out.read_text(encoding="utf-8")

    other = tmp_path / "elsewhere.html"
    assert main(["report", str(copy), "-o", str(other)]) == 0
    assert "mechmem sweep report" in other.read_text(encoding="utf-8")


def test_cli_refuses_to_write_over_the_sweeps_own_files(folder, capsys):
    before = (folder / "sweep.json").read_bytes()
    assert main(["report", str(folder), "-o", str(folder / "sweep.json"), "--force"]) == 2
    assert "would replace a file of the sweep" in one_error_line(capsys)
    assert (folder / "sweep.json").read_bytes() == before


@pytest.mark.parametrize(("kind", "message"), [
    ("empty", "is not a sweep folder: it has no sweep.json"),
    ("truncated", "is not valid JSON"),
    ("foreign", "is not a mechmem sweep file"),
])
def test_cli_on_a_folder_that_is_no_sweep_is_one_line_exit_2(kind, message, folder, tmp_path,
                                                              capsys):
    bad = tmp_path / "bad"
    shutil.copytree(folder, bad)
    if kind == "empty":
        shutil.rmtree(bad)
        bad.mkdir()
    elif kind == "truncated":
        text = (bad / "sweep.json").read_text()
        (bad / "sweep.json").write_text(text[: len(text) // 2])
    else:
        (bad / "sweep.json").write_text('{"format": "something else"}')
    before = sorted(os.listdir(bad))
    assert main(["report", str(bad)]) == 2
    err = one_error_line(capsys)
    assert message in err and str(bad) in err
    assert sorted(os.listdir(bad)) == before  # no report, no temporary file


@pytest.fixture(scope="module")
def empty(folder, tmp_path_factory):
    """The sweep before any cell finished."""
    copy = tmp_path_factory.mktemp("empty") / "grid"
    shutil.copytree(folder, copy)
    (copy / "cells.jsonl").write_text("")
    return load_sweep(copy)


@pytest.mark.parametrize("which", ["empty", "unfinished"])
def test_axes_span_the_grid_with_missing_cells(which, request):
    r = request.getfixturevalue(which)
    for key, fig in sweep_figures(r).items():
        layout = fig.layout
        for k in range(len(WD)):
            x = layout[f"xaxis{k + 1 if k else ''}"]
            y = layout[f"yaxis{k + 1 if k else ''}"]
            # ticks at the grid's values only, and a range one cell wider than the grid
            assert list(x.tickvals) == pytest.approx(ALPHA), key
            assert list(x.range) == pytest.approx([0.15, 1.05]), key
            assert list(y.tickvals) == pytest.approx(XI), key
            assert list(y.range) == pytest.approx([-0.15, 0.45]), key
    if which == "empty":
        assert all(v is None for t in heatmaps(phase_diagram_figure(r)) for row in t.z
                   for v in row)
    page = render_sweep_report(r)
    assert f"{r.n_cells - len(r.cells)} of {r.n_cells} cells are not finished" in page


def test_the_xi_0_row_has_its_own_phases(result):
    clean = [c for c in result.cells if c["config"]["corrupt_frac"] == 0]
    assert clean and all(c["phase"] in ("generalization", "memorization", "forgetting",
                                        "confusion") for c in clean)
    assert all(c["phase"] != "generalization" for c in result.cells
               if c["config"]["corrupt_frac"] > 0)
