"""Published claims as data, and ``reproduce()`` that checks them.

A :class:`~gradwatch.reproduce.core.Claim` is its source, statement, published numbers,
a :class:`~gradwatch.reproduce.core.Criterion` (thresholds and the sentence generated
from them) and an experiment that returns an :class:`~gradwatch.reproduce.core.Outcome`
with its figure. One module per family: ``theory``, ``recurrent``, ``search``,
``inits``, ``architectures``, ``optim``; ``suite`` orders them and writes the report.

This package sits above ``report`` (it renders its page with ``gradwatch.report``) and
below ``cli``.
"""

from gradwatch.reproduce.core import TIERS, Claim, Context, Criterion, Outcome
from gradwatch.reproduce.suite import CLAIMS, reproduce

__all__ = ["CLAIMS", "TIERS", "Claim", "Context", "Criterion", "Outcome", "reproduce"]
