"""Where the ``shipway`` commands print: results on stdout, notes about the work on stderr.

A module of its own (rich's console only) so that commands which render nothing else, such as
``shipway invoke``, do not import the tables and shapes of :mod:`shipway.cli.render`.
"""

from __future__ import annotations

from rich.console import Console

__all__ = ["console", "progress"]

console = Console(highlight=False, soft_wrap=True)
"""Results, on stdout."""
progress = Console(stderr=True, highlight=False, soft_wrap=True)
"""Spinners and notes about the work, on stderr, so stdout stays the result."""
