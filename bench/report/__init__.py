"""Reporting: reads result tables only (never the measuring code): Markdown, figures, regimes, run comparison."""
