"""mkdocs hook: Sphinx roles left in docstrings (``:class:`~a.b.C```) read as plain code.

The docstrings are Google style but name other objects with Sphinx roles; Markdown renders
those as ``:class:<code>~a.b.C</code>``. This drops the role and, as Sphinx does for ``~``,
shows only the last component of the path.
"""

from __future__ import annotations

import re

_ROLE = re.compile(r":(?:class|meth|func|attr|mod|data|exc|obj|const):<code>(~?)([^<]*)</code>")


def _code(match: re.Match[str]) -> str:
    tilde, target = match.groups()
    return f"<code>{target.rsplit('.', 1)[-1] if tilde else target}</code>"


def on_page_content(html: str, **kwargs: object) -> str:
    """Rewrite every role of the page's HTML."""
    return _ROLE.sub(_code, html)
