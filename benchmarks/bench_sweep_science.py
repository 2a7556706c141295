"""The paper's phase-diagram claims against a coarse sweep at its size, on the CPU.

Grid: alpha 0.2/0.4/0.6/0.8 x xi 0.1/0.3/0.5/0.7, weight decay 0 and 15, p 97, width 500,
the paper's 2,000 full-batch steps (32 cells). Prints each panel as a table, then what the paper
says beside what the sweep shows. The sweep folder is kept (rerun to resume it), and
`--image` writes the phase diagram as a PNG (plotly drawn by Debian's chromium).

    python benchmarks/bench_sweep_science.py [--out sweeps/science] [--image docs/img/x.png]
"""

import argparse
import time
from pathlib import Path

from mechmem import TrainConfig
from mechmem.analysis.phase import HIGH
from mechmem.sweep import SweepConfig, load_sweep, sweep

GRID = SweepConfig(
    TrainConfig(steps=2000, snapshot_every=None, device="cpu"),
    axes=(("weight_decay", (0.0, 15.0)), ("corrupt_frac", (0.1, 0.3, 0.5, 0.7)),
          ("train_frac", (0.2, 0.4, 0.6, 0.8))),
    name="coarse fig3a (benchmarks/bench_sweep_science.py)",
)
SHORT = {"coexistence": "Coex", "partial_inversion": "PartInv", "full_inversion": "FullInv",
         "memorization": "Memo", "forgetting": "Forget", "confusion": "Conf"}


def table(result, wd: float) -> str:
    grid = result.phase_grid(panel=None, weight_decay=wd)
    test = result.grid("test", panel=None, weight_decay=wd)
    rows = ["xi \\ alpha " + "".join(f"{a:>17}" for a in grid.x_values)]
    for j, xi in enumerate(grid.y_values):
        cells = "".join(f"{SHORT.get(grid.values[0, j, i], '-'):>9} {test.values[0, j, i]:6.1%} "
                        for i in range(len(grid.x_values)))
        rows.append(f"{xi:>11} " + cells)
    return "\n".join(rows)


def first_generalizing_alpha(result, wd: float) -> dict[float, float | None]:
    """For each xi, the smallest alpha whose cell reaches test accuracy >= 90%."""
    test = result.grid("test", panel=None, weight_decay=wd)
    out = {}
    for j, xi in enumerate(test.y_values):
        ok = [a for i, a in enumerate(test.x_values) if test.values[0, j, i] >= HIGH]
        out[xi] = min(ok) if ok else None
    return out


def claims(result) -> list[tuple[str, str, bool]]:
    g0 = result.phase_grid(panel=None, weight_decay=0.0)
    g15 = result.phase_grid(panel=None, weight_decay=15.0)
    p0, p15 = g0.values[0], g15.values[0]
    generalizing0 = [p0[j, i] for j in range(p0.shape[0]) for i in range(p0.shape[1])
                     if p0[j, i] in ("coexistence", "partial_inversion", "full_inversion")]
    memo_corner = p0[-1, 0]  # xi 0.7, alpha 0.2
    coex_to_full = [(g0.x_values[i], g0.y_values[j]) for j in range(p0.shape[0])
                    for i in range(p0.shape[1])
                    if p0[j, i] == "coexistence" and p15[j, i] == "full_inversion"]
    b0, b15 = first_generalizing_alpha(result, 0.0), first_generalizing_alpha(result, 15.0)
    inf = float("inf")
    lower = [xi for xi in b0 if (b15[xi] or inf) < (b0[xi] or inf)]
    higher = [xi for xi in b0 if (b15[xi] or inf) > (b0[xi] or inf)]
    n_coex = sum(p == "coexistence" for p in generalizing0)
    return [
        ("wd 0: Memorization at very high xi and/or very low alpha",
         f"(alpha 0.2, xi 0.7) is {memo_corner}", memo_corner == "memorization"),
        ("wd 0: the generalizing cells generalize *and* memorize (Coexistence)",
         f"{n_coex} of {len(generalizing0)} generalizing cells are Coexistence",
         bool(generalizing0) and n_coex >= len(generalizing0) / 2),
        ("wd 15: Full Inversion appears where wd 0 had Coexistence",
         f"Coexistence -> Full Inversion at (alpha, xi) = {coex_to_full}", bool(coex_to_full)),
        ("wd 15: the Memorization/generalization boundary moves to lower alpha",
         f"smallest generalizing alpha per xi: wd 0 {b0}, wd 15 {b15}",
         bool(lower) and not higher),
    ]


def write_image(result, path: Path) -> None:
    from _browser import figure_pngs

    from mechmem.report import phase_diagram_figure

    figure_pngs({path: phase_diagram_figure(result)}, width=1100)
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="sweeps/science", help="the sweep folder (resumed)")
    parser.add_argument("--image", help="write the phase diagram as a PNG here")
    args = parser.parse_args()
    out = Path(args.out)
    start = time.perf_counter()
    if (out / "sweep.json").exists():
        result = sweep(None, out=out, resume=True, progress=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        result = sweep(GRID, out=out, progress=True)
    seconds = time.perf_counter() - start
    cells = result.cells
    print(f"\n{len(cells)} cells x 2000 steps at p 97, width 500 on the CPU in {seconds:.0f} s "
          f"this run ({sum(c['config']['steps'] for c in cells) / max(seconds, 1e-9):.0f} "
          "model-steps/s when nothing was resumed)")
    for wd in (0.0, 15.0):
        print(f"\nweight decay {wd:g}: phase and final test accuracy")
        print(table(result, wd))
    print("\nthe paper says | the sweep shows")
    ok = True
    for said, shown, holds in claims(result):
        ok &= holds
        print(f"  [{'holds' if holds else 'DIFFERS'}] {said}\n      {shown}")
    if args.image:
        write_image(load_sweep(out), Path(args.image))
    print("\nall claims hold" if ok else "\nsome claims differ (see above)")


if __name__ == "__main__":
    main()
