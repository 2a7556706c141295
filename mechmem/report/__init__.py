"""HTML reports: one self-contained page telling the story of an analysed network, or of a
sweep (its phase diagram and accuracy and IPR heatmaps, in `_sweep`), and every figure of
either page as a plotly `go.Figure` (`figures`, `sweep_figures` and one function per figure).

This is the only package of mechmem that imports plotly; `mechmem` and `mechmem.analysis` never
import it (`Analysis.to_html` imports this package when called).
"""

from ._figures import accuracy_figure as accuracy_figure
from ._figures import batchnorm_figure as batchnorm_figure
from ._figures import data_map_figure as data_map_figure
from ._figures import figures as figures
from ._figures import frequency_figure as frequency_figure
from ._figures import ipr_curve_figure as ipr_curve_figure
from ._figures import ipr_histogram_figure as ipr_histogram_figure
from ._figures import least_periodic_figure as least_periodic_figure
from ._figures import logits_figure as logits_figure
from ._figures import loss_figure as loss_figure
from ._figures import margin_distribution_figure as margin_distribution_figure
from ._figures import memorized_neurons_figure as memorized_neurons_figure
from ._figures import most_periodic_figure as most_periodic_figure
from ._figures import neuron_weights_figure as neuron_weights_figure
from ._figures import norms_figure as norms_figure
from ._figures import periodic_fraction_figure as periodic_fraction_figure
from ._figures import progress_figure as progress_figure
from ._figures import pruning_figure as pruning_figure
from ._figures import site_ipr_figure as site_ipr_figure
from ._figures import spectra_figure as spectra_figure
from ._page import render_report as render_report
from ._page import write_report as write_report
from ._sweep import PHASE_COLOURS as PHASE_COLOURS
from ._sweep import accuracy_heatmap_figure as accuracy_heatmap_figure
from ._sweep import ipr_heatmap_figure as ipr_heatmap_figure
from ._sweep import phase_diagram_figure as phase_diagram_figure
from ._sweep import render_sweep_report as render_sweep_report
from ._sweep import sweep_figures as sweep_figures
from ._sweep import write_sweep_report as write_sweep_report
