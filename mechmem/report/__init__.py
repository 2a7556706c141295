"""HTML reports: one self-contained page telling the story of an analysed network.

This is the only package of mechmem that imports plotly; `mechmem` and `mechmem.analysis` never
import it (`Analysis.to_html` imports this package when called).
"""

from ._page import render_report as render_report
from ._page import write_report as write_report
