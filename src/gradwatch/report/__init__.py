"""Figures and reports: the theory lab's figures and summaries, HTML pages (one Jinja2 base template: pages)."""

from gradwatch.report import html, lab, pages

__all__ = ["html", "lab", "pages"]
