"""HTML pages from the templates in ``pcnctl/reports/templates``, every value escaped unless a template
says otherwise.

A subject or a display name comes from whoever wrote the threat: it reaches the page as text, never as
markup. Autoescaping is on for every template (``.html.j2``), and an undefined variable is an error
rather than an empty cell. Jinja2 is imported here, when a page is rendered, not when pcnctl starts.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

TEMPLATES = Path(__file__).parent / "templates"


def render(template: str, **context: Any) -> str:
    """The page ``template`` renders with ``context`` (values escaped; unknown names refused)."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    return env.get_template(template).render(**context)
