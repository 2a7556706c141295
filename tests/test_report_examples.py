"""The report's single-example figures: margins by status, the data map, examples x neurons."""

import pytest

from mechmem import TrainConfig, analyze, report, train
from mechmem.report import figures, render_report

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tracked():
    ckpt = train(TrainConfig(p=23, width=64, corrupt_frac=0.3, steps=200, device="cpu",
                             track_examples=True, snapshot_every=None))
    return analyze(ckpt)


def test_margin_histograms_hold_every_example_once(tracked):
    fig = report.margin_distribution_figure(tracked)
    counts = tracked.examples.counts()
    drawn = {t.name.split(" ")[0]: len(t.x) for t in fig.data}
    assert drawn == {s: n for s, n in counts.items() if n}
    assert sum(drawn.values()) == tracked.dataset.n_train


def test_the_data_map_plots_each_example_from_its_history(tracked):
    fig = report.data_map_figure(tracked)
    d = tracked.example_dynamics
    clean, corrupted = fig.data
    assert len(clean.x) + len(corrupted.x) == tracked.dataset.n_train
    assert len(corrupted.y) == int(d.corrupted.sum())
    assert corrupted.y[0] == pytest.approx(float(d.confidence[d.corrupted][0]), rel=1e-3)


def test_memorized_examples_by_neurons(tracked):
    ex = tracked.examples
    fig = report.memorized_neurons_figure(tracked)
    z = fig.data[0].z
    assert len(z) == min(60, ex.memorized.numel()) and len(z[0]) == ex.contributions.shape[1]
    # Each row is an example's margin split over neurons: the shares sum to 1 (no bias).
    assert sum(z[0]) == pytest.approx(1.0, abs=0.02)
    assert "low-IPR neurons hold" in render_report(tracked)


def test_untracked_runs_leave_the_data_map_out_and_say_why(tracked):
    plain = analyze(train(TrainConfig(p=23, width=64, corrupt_frac=0.3, steps=20,
                                      device="cpu", snapshot_every=None)))
    assert "data-map" not in figures(plain) and "example-margins" in figures(plain)
    with pytest.raises(ValueError, match="track_examples=True"):
        report.data_map_figure(plain)
    assert "data-map" in figures(tracked)
