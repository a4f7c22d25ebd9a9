"""One section of the run report, rendered to Markdown and to HTML from the same content; the
report (report.py) and its example chains (report_chains.py) both build them."""

from __future__ import annotations

from dataclasses import dataclass, field

NOT_AVAILABLE = "not available"


@dataclass
class Section:
    """One report section; rendered to Markdown and to HTML from the same content."""

    title: str
    text: list[str] = field(default_factory=list)
    tables: list[tuple[list[str], list[list[str]]]] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)
