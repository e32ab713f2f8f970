"""A real browser renders what users read: the HTML report of real runs and the docs site.

Debian's ``chromium`` runs headless (installed by the session fixture with ``apt-get`` when it
is absent and this process may; otherwise the tests skip, saying why). Each page is loaded
twice, at most 60 s each: ``--dump-dom`` gives the DOM after the page's scripts ran, whose
``<img>`` elements must each point at an image that exists and decodes, and ``--screenshot``
a PNG of the page. Chromium's log (``--enable-logging=stderr --v=0``) carries every console
message and uncaught exception as a ``CONSOLE`` line; the pages must log none.

Screenshots are saved under ``tmp_path`` and, when ``BOLTZGEN_SCREENSHOTS`` names a folder, also
copied there, e.g. ``BOLTZGEN_SCREENSHOTS=shots pytest tests/test_browser.py``; look at them.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import importlib.util
import io
import os
import re
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import matplotlib.image
import pytest
from html_images import decode_image, image_sources

from boltzgen.cli.main import main

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ("chromium", "chromium-browser")
RENDER_TIMEOUT_S = 60
WIDTH = 1280
_CONSOLE = re.compile(r"^.*(?::CONSOLE|Uncaught).*$", flags=re.M)


@pytest.fixture(scope="session")
def chromium() -> str:
    """The chromium executable; installed with apt-get (as root) when absent."""
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("apt-get"):
        pytest.skip("chromium is not installed, and installing it needs apt-get as root")
    environment = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "chromium"]):
        try:
            result = subprocess.run(
                command, env=environment, capture_output=True, text=True, timeout=900
            )
        except subprocess.TimeoutExpired:
            pytest.skip(f"'{' '.join(command)}' did not finish within 900 s")
        if result.returncode != 0:
            tail = " ".join((result.stderr or result.stdout).split()[-30:])
            pytest.skip(f"'{' '.join(command)}' failed ({result.returncode}): {tail}")
    for name in BROWSERS:
        if found := shutil.which(name):
            return found
    pytest.skip("apt-get installed chromium, but no chromium executable is on PATH")


@pytest.fixture(scope="session")
def screenshot_copies() -> Path | None:
    """The folder named by ``BOLTZGEN_SCREENSHOTS`` (created), or ``None``."""
    folder = os.environ.get("BOLTZGEN_SCREENSHOTS")
    if not folder:
        return None
    path = Path(folder).resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def _chromium(browser: str, url: str, profile: Path, *options: str) -> str:
    """Run headless chromium on ``url``; return its stdout, failing on a non-zero exit or any
    console message or uncaught exception in its log."""
    command = [
        browser,
        "--headless",
        "--no-sandbox",  # chromium refuses to run as root with its sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
        "--disable-extensions",
        f"--user-data-dir={profile}",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",  # let the page's scripts and timers run first
        *options,
        url,
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
    assert result.returncode == 0, f"chromium exited with {result.returncode} on {url}"
    console = _CONSOLE.findall(result.stderr)
    assert not console, f"console messages on {url}:\n" + "\n".join(console)
    return result.stdout


def render(
    browser: str,
    url: str,
    page: Path,
    screenshot: Path,
    copies: Path | None,
    height: int,
) -> str:
    """Render ``url`` (the file ``page``): check that every image of its DOM loads, save a
    ``WIDTH x height`` screenshot (and a copy), and return the DOM."""
    profile = screenshot.parent / f".profile-{screenshot.stem}"
    dom = _chromium(browser, url, profile, "--dump-dom")
    assert "</html>" in dom, f"no DOM from {url}"
    for source in image_sources(dom):
        assert source, f"an <img> without src on {url}"
        pixels = decode_image(source, page)
        assert pixels.size > 0, f"an empty image {source[:80]} on {url}"
    screenshot.parent.mkdir(parents=True, exist_ok=True)
    _chromium(
        browser, url, profile, f"--screenshot={screenshot}", f"--window-size={WIDTH},{height}"
    )
    pixels = matplotlib.image.imread(screenshot)
    assert pixels.shape[:2] == (height, WIDTH), pixels.shape
    assert float(pixels[..., :3].std()) > 0.01, f"a blank screenshot of {url}"
    if copies is not None:
        shutil.copy2(screenshot, copies / screenshot.name)
    return dom


def _boltzgen(*argv: str) -> str:
    """Run a boltzgen command in this process; its stdout (fails on a non-zero exit)."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    assert code == 0, f"boltzgen {' '.join(argv)} exited with {code}: {out.getvalue()}"
    return out.getvalue()


#: Tiny real runs: (template, overrides, figures the report must show).
RUNS = {
    "toy": ("toy-reverse-kl", ["trainer.steps=60", "trainer.log_every=5", "sample.n=2000"], 1),
    "lattice": ("discrete-ratio-divergence", ["trainer.steps=100", "sample.n=2000"], 1),
    "molecule": (
        "alanine-dipeptide-demo",
        [
            "trainer.pretrain_steps=40",
            "trainer.pretrain_warmup_steps=5",
            "trainer.buffer_samples=1000",
            "trainer.resample_size=500",
            "trainer.rung_steps=10",
            "trainer.log_every=5",
            "sample.n=2000",
        ],
        5,
    ),
}


@pytest.mark.parametrize("kind", list(RUNS))
def test_report_renders(
    kind: str,
    chromium: str,
    screenshot_copies: Path | None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``boltzgen report`` of a real run: every figure loads, no console messages; screenshot."""
    template, overrides, n_figures = RUNS[kind]
    monkeypatch.chdir(tmp_path)
    _boltzgen("init", template, "-o", "run.toml")
    sets = [item for override in overrides for item in ("--set", override)]
    _boltzgen("train", "run.toml", "-o", "run", "--no-progress", *sets)
    _boltzgen("report", "run", "-o", "run/report.html")
    page = tmp_path / "run" / "report.html"
    dom = render(
        chromium,
        page.as_uri(),
        page,
        tmp_path / "screenshots" / f"report-{kind}.png",
        screenshot_copies,
        height=4400 if kind == "molecule" else 2400,
    )
    assert "boltzgen run report" in dom
    assert len(image_sources(dom)) >= n_figures


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        pass


@pytest.fixture(scope="module")
def docs_site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The docs site built with ``mkdocs build --strict`` and served over HTTP on localhost
    (the search of mkdocs-material fetches its index, which a file:// page may not)."""
    if importlib.util.find_spec("mkdocs") is None:
        pytest.skip("mkdocs is not installed (pip install -e '.[docs]')")
    site = tmp_path_factory.mktemp("docs") / "site"
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        env=os.environ | {"NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stderr[-3000:]}"
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield site, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


#: Pages of the site rendered: the home page, a tutorial, an API page, the pages with figures.
DOC_PAGES = [
    "index.html",
    "tutorials/own-molecule.html",
    "api/training.html",
    "tabg.html",
    "md.html",
    "tabg_study/index.html",
    "discrete_study.html",
]


@pytest.mark.parametrize("name", DOC_PAGES)
def test_docs_page_renders(
    name: str,
    chromium: str,
    docs_site: tuple[Path, str],
    screenshot_copies: Path | None,
    tmp_path: Path,
) -> None:
    """A page of the built docs: its images load, no console messages; screenshot."""
    site, base = docs_site
    page = site / name
    assert page.is_file(), f"the site has no {name}"
    dom = render(
        chromium,
        f"{base}/{name}",
        page,
        tmp_path / f"docs-{name.replace('/', '-').removesuffix('.html')}.png",
        screenshot_copies,
        height=2000,
    )
    assert "md-content" in dom, "the page was not rendered by the mkdocs-material theme"
    if name.startswith("api/"):
        assert 'class="doc doc-heading"' in dom or "doc-heading" in dom
