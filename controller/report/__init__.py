"""The campaign report: an HTML page with PNG plots, readable offline (``cellpilot report``)."""

from __future__ import annotations

from controller.report.html import best_so_far, random_baseline, write_report

__all__ = ["best_so_far", "random_baseline", "write_report"]
