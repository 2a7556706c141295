"""HTML reports: one self-contained page telling the story of an analysed network, or of a
sweep (its phase diagram and accuracy and IPR heatmaps, in `_sweep`).

This is the only package of mechmem that imports plotly; `mechmem` and `mechmem.analysis` never
import it (`Analysis.to_html` imports this package when called).
"""

from ._page import render_report as render_report
from ._page import write_report as write_report
from ._sweep import PHASE_COLOURS as PHASE_COLOURS
from ._sweep import accuracy_heatmap_figure as accuracy_heatmap_figure
from ._sweep import ipr_heatmap_figure as ipr_heatmap_figure
from ._sweep import phase_diagram_figure as phase_diagram_figure
from ._sweep import render_sweep_report as render_sweep_report
from ._sweep import sweep_figures as sweep_figures
from ._sweep import write_sweep_report as write_sweep_report
