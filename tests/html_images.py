"""The images of an HTML page (a ``boltzgen report``, a docs page), found and decoded."""

from __future__ import annotations

import base64
import io
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse

import matplotlib.image
import numpy as np


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def image_sources(html: str) -> list[str]:
    """The ``src`` of every ``<img>`` of ``html``, in order ("" for an image without one)."""
    parser = _Images()
    parser.feed(html)
    return parser.sources


def decode_image(source: str, page: Path) -> np.ndarray:
    """The pixels of one image ``src`` of the HTML file ``page``: a ``data:`` URI (base64) or a
    relative or ``file://`` path; raises ``FileNotFoundError`` or a decoding error when the
    browser could not show it either."""
    if source.startswith("data:"):
        header, _, payload = source.partition(",")
        data = base64.b64decode(payload) if header.endswith(";base64") else unquote(payload)
        kind = header[5:].split(";")[0]
        if kind == "image/svg+xml":
            text = data.decode() if isinstance(data, bytes) else data
            assert "<svg" in text, f"an SVG data URI without <svg>: {text[:80]!r}"
            return np.ones((1, 1))
        return matplotlib.image.imread(io.BytesIO(data), format=kind.split("/")[-1])
    url = urlparse(source)
    path = Path(unquote(url.path)) if url.scheme == "file" else page.parent / unquote(url.path)
    if path.suffix == ".svg":
        assert "<svg" in path.read_text(), f"{path} is not an SVG image"
        return np.ones((1, 1))
    return matplotlib.image.imread(path)
