"""The HTML report: content, escaping, self-containment and atomic writes (no browser here)."""

import html
import json
import math
import os
import re
import subprocess
import sys

import plotly.graph_objects as go
import pytest
import torch

from mechmem import (
    DatasetSpec,
    HookedMLP,
    MLPConfig,
    TrainConfig,
    analyze,
    make_dataset,
    report,
    train,
)
from mechmem.report import figures, render_report, write_report
from mechmem.report._page import script_json
from mechmem.report._plot import numbers

HOSTILE_NAME = "</script><script>window.__pwned = 1</script><!-- x"
HOSTILE_CONFIG = '<img src=x onerror="window.__pwned = 2">'


def figures_of(page: str) -> dict:
    """The figure specs embedded in a report page, parsed back from its JSON block."""
    block = re.search(r'<script type="application/json" id="mechmem-figures">(.*?)</script>',
                      page, flags=re.S)
    assert block is not None, "the page has no figure data block"
    return json.loads(block.group(1))


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """A tiny real training run with a hostile name, saved and analysed from its file."""
    folder = tmp_path_factory.mktemp("report")
    config = TrainConfig(p=23, width=64, train_frac=0.6, corrupt_frac=0.3, weight_decay=5.0,
                         steps=300, eval_every=10, snapshot_every=100, name=HOSTILE_NAME,
                         device="cpu")
    ckpt = train(config, out=folder / "tiny.pt")
    analysis = analyze(folder / "tiny.pt")
    return ckpt, analysis, render_report(analysis)


def test_importing_mechmem_and_its_analyzers_does_not_import_plotly():
    code = ("import sys, mechmem, mechmem.analysis; from mechmem import analyze; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'plotly'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_page_is_self_contained_with_plotly_inlined_once(run):
    _, _, page = run
    assert page.count("plotly.js v") == 1  # the bundle's banner
    assert not re.search(r"<(script|img|link|iframe)[^>]*\s(src|href)=", page, flags=re.I)
    # plotly is told, before it loads, never to look for MathJax
    assert page.index('MathJaxConfig: "local"') < page.index("plotly.js v")
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]*)"', page)
    assert csp is not None and "connect-src &#x27;none&#x27;" in csp.group(1)


def test_every_section_has_its_figure_with_a_caption(run):
    _, analysis, page = run
    figures = figures_of(page)
    expected = {"training-accuracy", "training-loss", "training-norms", "training-ipr",
                "periodic-neurons", "ipr-histogram", "spectra", "weights-most", "weights-least",
                "frequencies", "pruning", "logits", "example-margins", "memorized-neurons"}
    assert set(figures) == {f"fig-{k}" for k in expected}
    for key in figures:
        assert re.search(f'<div class="plot" id="{key}"></div><figcaption>[^<]+</figcaption>',
                         page), key
    assert 'id="missing-batchnorm"' in page  # no BatchNorm in this model: said in place
    # The IPR histogram shows the first snapshot (step 0) beside the end.
    names = [t["name"] for t in figures["fig-ipr-histogram"]["data"]]
    assert names == ["at init (step 0)", "end (step 300)"]
    # The spectra heatmap has one row per neuron, highest IPR first.
    heat = figures["fig-spectra"]["data"][0]
    assert len(heat["y"]) == analysis.model.cfg.width
    top = int(heat["y"][0].split()[-1])
    assert analysis.ipr.combined[top] == torch.nan_to_num(analysis.ipr.combined, nan=-1).max()


@pytest.mark.parametrize("key", ["fig-training-accuracy", "fig-ipr-histogram", "fig-spectra",
                                 "fig-weights-most", "fig-frequencies", "fig-pruning",
                                 "fig-logits"])
def test_figures_are_valid_plotly(run, key):
    spec = figures_of(run[2])[key]
    go.Figure(spec)  # plotly's own validation: raises on any unknown property or bad value


def test_figures_carry_the_analysis_numbers(run):
    _, analysis, page = run
    figures = figures_of(page)
    asc = figures["fig-pruning"]["data"][3]  # lowest IPR first, memorization line
    curve = analysis.pruning.curves["ipr_ascending"]
    assert asc["y"] == pytest.approx(curve.corrupted_memorized.tolist(), abs=1e-3)
    acc = figures["fig-training-accuracy"]["data"][1]
    assert acc["name"] == "test"
    assert acc["y"][-1] == pytest.approx(analysis.accuracy.test, abs=1e-3)
    logits = figures["fig-logits"]["data"][0]["x"]
    assert len(logits) == analysis.logits.corrupted_label_logit.numel() > 0


def test_checkpoint_strings_are_escaped(run):
    _, analysis, page = run
    assert analysis.name == HOSTILE_NAME
    assert HOSTILE_NAME not in page
    assert "window.__pwned" in page  # present, but only as escaped text
    assert page.count("<script") == 4  # prelude, plotly.js, figure data, boot: nothing more
    escaped = HOSTILE_NAME.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    assert escaped in page


def test_config_values_are_escaped(run, tmp_path):
    ckpt, _, _ = run
    from mechmem.checkpoint import replace

    hostile = replace(ckpt, train_config={**ckpt.train_config, "name": HOSTILE_CONFIG},
                      meta={**ckpt.meta, "name": HOSTILE_CONFIG})
    page = render_report(analyze(hostile))
    assert HOSTILE_CONFIG not in page
    assert "&lt;img src=x onerror=&quot;window.__pwned = 2&quot;&gt;" in page


def test_script_json_cannot_close_its_element():
    text = script_json({"a": "</script><!-- <b> & \u2028", "b": [1.5, None]})
    assert "<" not in text and ">" not in text and "&" not in text
    assert json.loads(text) == {"a": "</script><!-- <b> & \u2028", "b": [1.5, None]}


def test_numbers_round_to_significant_digits_against_python_formatting():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(2000, generator=gen, dtype=torch.float64) * 10.0 ** torch.randint(
        -8, 8, (2000,), generator=gen)
    expected = [float(f"{v:.4g}") for v in x.tolist()]
    assert numbers(x) == pytest.approx(expected, rel=1e-12)
    assert numbers([0.0, math.nan, math.inf, -math.inf, 1 / 3]) == [0.0, None, None, None,
                                                                    0.3333]
    assert numbers(torch.tensor([[1.23456, math.nan]])) == [[1.235, None]]


def test_stage_marks_are_the_dynamics_steps(run):
    _, analysis, page = run
    d = analysis.dynamics
    layout = figures_of(page)["fig-training-accuracy"]["layout"]
    lines = {n["text"]: n["x"] for n in layout["annotations"] if n["text"] != "unlearning"}
    expected = {name: e.step for name, e in (("memorization", d.memorization),
                                             ("grokking", d.grokking),
                                             ("forgetting", d.forgetting)) if e.step is not None}
    assert lines == expected and "memorization" in lines
    bands = [s for s in layout["shapes"] if s["type"] == "rect"]
    if d.unlearning.step is None:
        assert bands == []
    else:
        assert (bands[0]["x0"], bands[0]["x1"]) == (d.train_peak.step, d.unlearning.step)


def test_periodic_neurons_figure_is_the_dynamics_fraction(run):
    _, analysis, page = run
    trace = figures_of(page)["fig-periodic-neurons"]["data"][0]
    n = analysis.dynamics.neurons
    assert trace["x"] == list(n.steps) == [0, 100, 200, 300]
    assert trace["y"] == pytest.approx(list(n.periodic_fraction), abs=1e-4)


# Each public figure function and the page key of the figure it draws.
FIGURE_FUNCTIONS = {
    "training-accuracy": "accuracy_figure", "training-loss": "loss_figure",
    "training-norms": "norms_figure", "training-ipr": "ipr_curve_figure",
    "periodic-neurons": "periodic_fraction_figure", "ipr-histogram": "ipr_histogram_figure",
    "spectra": "spectra_figure", "weights-most": "most_periodic_figure",
    "weights-least": "least_periodic_figure", "frequencies": "frequency_figure",
    "site-ipr": "site_ipr_figure", "pruning": "pruning_figure",
    "batchnorm": "batchnorm_figure", "logits": "logits_figure",
    "example-margins": "margin_distribution_figure", "data-map": "data_map_figure",
    "memorized-neurons": "memorized_neurons_figure",
}


def test_the_page_draws_exactly_the_figures_of_the_python_functions(run):
    _, analysis, page = run
    on_page = figures_of(page)
    figs = figures(analysis)
    assert {f"fig-{k}" for k in figs} == set(on_page)
    for key, fig in figs.items():
        assert isinstance(fig, go.Figure)
        # JSON round trip: the page's block holds exactly what the function returned
        assert json.loads(json.dumps(fig.to_plotly_json())) == on_page[f"fig-{key}"], key
        one = getattr(report, FIGURE_FUNCTIONS[key])(analysis)
        assert one.to_plotly_json() == fig.to_plotly_json(), key


def test_a_figure_that_does_not_apply_says_why(run):
    _, analysis, _ = run
    assert set(figures(analysis)) == set(FIGURE_FUNCTIONS) - {"site-ipr", "batchnorm",
                                                              "data-map"}
    with pytest.raises(ValueError, match="no BatchNorm layer"):
        report.batchnorm_figure(analysis)
    with pytest.raises(ValueError, match="one neuron site"):
        report.site_ipr_figure(analysis)
    ds = make_dataset(DatasetSpec(p=23, train_frac=0.6, corrupt_frac=0.2, seed=1))
    bare = analyze(HookedMLP(MLPConfig(p=23, width=16), seed=1), ds)
    for name in ("accuracy_figure", "loss_figure", "norms_figure", "ipr_curve_figure",
                 "periodic_fraction_figure"):
        with pytest.raises(ValueError, match="no training history"):
            getattr(report, name)(bare)
    assert not any(k.startswith(("training", "periodic")) for k in figures(bare))


def test_a_figure_restyled_in_python_leaves_the_page_alone(run):
    _, analysis, page = run
    fig = report.pruning_figure(analysis)
    fig.update_layout(height=900, title_text="mine").update_traces(line_width=5)
    assert fig.layout.height == 900 and fig.data[0].line.width == 5
    assert report.pruning_figure(analysis).layout.height == 400  # a fresh figure each call
    assert render_report(analysis) == page


def test_neuron_weights_figure_draws_the_chosen_neurons(run):
    _, analysis, _ = run
    fig = report.neuron_weights_figure(analysis, [5, 7])
    names = {t.name.split(" (")[0] for t in fig.data}
    assert names == {"neuron 5", "neuron 7"} and len(fig.data) == 2 * 3  # U, V, W each
    with pytest.raises(ValueError, match=r"indices in \[0, 64\), got \[64\]"):
        report.neuron_weights_figure(analysis, [64])


def test_model_built_in_python_has_no_history_and_says_so():
    ds = make_dataset(DatasetSpec(p=23, train_frac=0.6, corrupt_frac=0.2, seed=1))
    model = HookedMLP(MLPConfig(p=23, width=32, norm="batchnorm"), seed=1)
    page = render_report(analyze(model, ds))
    figures = figures_of(page)
    assert not any(k.startswith("fig-training") for k in figures)
    assert 'id="missing-training"' in page and "no training history" in page
    assert [t["name"] for t in figures["fig-ipr-histogram"]["data"]] == ["end"]
    assert "fig-batchnorm" in figures  # BatchNorm model: gain against IPR
    go.Figure(figures["fig-batchnorm"])


def test_dead_and_non_finite_neurons_are_reported_not_drawn():
    ds = make_dataset(DatasetSpec(p=23, train_frac=0.6, corrupt_frac=0.2, seed=1))
    model = HookedMLP(MLPConfig(p=23, width=16), seed=1)
    with torch.no_grad():
        model.U.zero_()  # every neuron dead: no IPR anywhere
        model.V[3] = math.nan
        model.W[:, 5] = math.inf
    page = render_report(analyze(model, ds))
    assert re.findall(r'class="missing" id="missing-([a-z-]+)"', page) == [
        "training", "progress", "weights-most", "frequencies", "batchnorm", "example-margins"]
    assert "Every neuron is dead" in page
    assert "margin is finite: the model's outputs hold NaN" in html.unescape(page)
    for spec in figures_of(page).values():
        go.Figure(spec)


def test_write_report_is_atomic_and_never_overwrites_unasked(run, tmp_path):
    _, analysis, page = run
    out = tmp_path / "r.html"
    assert write_report(analysis, out) == out
    assert out.read_text(encoding="utf-8") == page  # rendering is deterministic
    out.write_text("keep me")
    with pytest.raises(FileExistsError, match=r"exists; pass --force \(overwrite=True"):
        write_report(analysis, out)
    assert out.read_text() == "keep me"
    analysis.to_html(out, overwrite=True)
    assert out.read_text(encoding="utf-8") == page
    with pytest.raises(FileNotFoundError, match="does not exist"):
        write_report(analysis, tmp_path / "no" / "r.html")
    assert sorted(os.listdir(tmp_path)) == ["r.html"]  # no temporary file left behind
