"""Figures and reports: the theory lab's figures and summaries, HTML reports of run stores."""

from gradwatch.report import html, lab

__all__ = ["html", "lab"]
