"""Jupyter displays and short reprs of Analysis, Checkpoint and SweepResult: escaped, inert,
and carrying the headline facts."""

import re
import subprocess
import sys

import pytest

from mechmem import Checkpoint, TrainConfig, analytic_solution, analyze, make_dataset
from mechmem.sweep import SweepConfig
from mechmem.sweep.result import SweepResult

pytestmark = pytest.mark.usefixtures("one_thread")

HOSTILE = "<script>alert(1)</script>"


def inert(page: str) -> None:
    """No markup but table cells, no script, no URL, no attribute that could run or fetch."""
    assert "<script" not in page.lower() and "alert(1)</" not in page
    assert not re.search(r"https?:|//|\b(src|href|on\w+)=", page, flags=re.I)
    assert set(re.findall(r"</?([a-z]+)", page)) <= {"table", "caption", "tr", "th", "td"}


@pytest.fixture(scope="module")
def ckpt():
    ds = make_dataset(p=23, train_frac=0.5, corrupt_frac=0.3, seed=0)
    return Checkpoint(model=analytic_solution(p=23, width=40), dataset=ds,
                      history={"step": [10, 20], "train_acc": [0.5, 0.7],
                               "test_acc": [0.5, 1.0]},
                      step=20, meta={"name": HOSTILE})


def test_analysis_display(ckpt):
    a = analyze(ckpt)
    page = a._repr_html_()
    inert(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    train, test = (f"{100 * x:.1f}%" for x in (a.accuracy.train, a.accuracy.test))
    for fact in ("mlp", "full_inversion", f"{train} / {test}", "40 periodic",
                 "grokking</th><td style=\"text-align:left\">step 20",
                 "add mod 23, alpha 0.5, xi 0.3"):
        assert fact in page, fact
    text = repr(a)
    assert text == (f"Analysis('<script>alert(1)</script>': mlp, full_inversion, train {train}, "
                    f"test {test}, step 20)")


def test_checkpoint_display(ckpt):
    page = ckpt._repr_html_()
    inert(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for fact in ("mlp", "70.0% / 100.0% at step 20", "add mod 23", "width"):
        assert fact in page, fact
    assert repr(ckpt) == ("Checkpoint('<script>alert(1)</script>': mlp p=23, step 20, "
                          "2 evaluations, 0 snapshots)")


def test_sweep_display(tmp_path):
    config = SweepConfig(TrainConfig(p=23, width=32, steps=50, name=HOSTILE),
                         axes=(("weight_decay", (0.0, 2.0)), ("corrupt_frac", (0.0, 0.2))),
                         name=HOSTILE)
    result = SweepResult(path=tmp_path, config=config,
                         cells=({"phase": "coexistence"}, {"phase": "memorization"},
                                {"phase": "coexistence"}), n_cells=4, header={})
    page = result._repr_html_()
    inert(page)
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for fact in ("3 of 4 done", "coexistence 2, memorization 1", "axis weight_decay",
                 "0.0, 2.0", "steps"):
        assert fact in page, fact
    assert repr(result) == (f"SweepResult({str(tmp_path)!r}: 3/4 cells; coexistence 2, "
                            "memorization 1)")


def test_displays_import_no_plotly(ckpt, tmp_path):
    from mechmem import save_checkpoint

    path = save_checkpoint(ckpt, tmp_path / "c.pt")
    code = ("import sys, mechmem\n"
            f"c = mechmem.load_checkpoint({str(path)!r})\n"
            "a = mechmem.analyze(c)\n"
            "repr(c), c._repr_html_(), repr(a), a._repr_html_()\n"
            "assert not any(m.split('.')[0] == 'plotly' for m in sys.modules)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
