"""Fenced code blocks of the Markdown docs, read and run by the tests (README, tutorials).

A block is three backticks, a language tag, the code and three backticks at the start of a line;
``code_blocks`` returns them in the order of the page, so a page's examples can run one after the
other and use what the earlier ones wrote.
"""

from __future__ import annotations

import re

_FENCE = re.compile(r"^```([\w+-]*)[^\n]*\n(.*?)^```", flags=re.S | re.M)


def code_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every fenced block of ``text``, in order (language may be "").

    >>> code_blocks("a\\n```bash\\nls\\n```\\n```python\\nx = 1\\n```\\n")
    [('bash', 'ls\\n'), ('python', 'x = 1\\n')]
    """
    return [(match.group(1), match.group(2)) for match in _FENCE.finditer(text)]


def fenced_blocks(text: str, language: str) -> list[str]:
    """The code of the blocks of ``text`` tagged ``language``, in order."""
    return [code for tag, code in code_blocks(text) if tag == language]


def run_python(source: str, name: str) -> dict:
    """Execute one Python example in a fresh namespace (the current directory is the caller's)
    and return the namespace, for assertions on what the example computed."""
    namespace: dict = {"__name__": "__example__"}
    exec(compile(source, name, "exec"), namespace)
    return namespace
