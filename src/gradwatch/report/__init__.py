"""Figures and reports: the theory lab's figures and summaries (HTML reports come later)."""

from gradwatch.report import lab

__all__ = ["lab"]
