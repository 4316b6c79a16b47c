"""atelier's HTML reports in a real headless browser: Debian's chromium, driven by Selenium.

``Browser`` starts one chromium through Debian's chromedriver (both files named outright, so Selenium
Manager never looks for a browser or a driver on the network) and is meant to live for a whole test
session: starting it takes seconds on two cores. ``open_page`` loads a report from ``file://`` and
says what a reader would meet (``PageCheck``): console errors and uncaught exceptions, every picture
and whether it decoded, the rows of each table with an id, the links to local files and whether they
exist. ``screenshot`` saves a full-page PNG, scaled down to stay small enough to commit.

Used by tests/integration/test_report_browser.py and by scripts/screenshots.py (the README's pictures),
so the pictures are taken the way the test looks at the pages.
"""

from __future__ import annotations

import io
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from tests.tiny_classifier import MODEL
from tests.tiny_classifier import tiny_dataset as tiny_dataset  # the dataset and run under the reports
from tests.tiny_classifier import tiny_run as tiny_run

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW = (1280, 900)  # CSS pixels, device scale 1
MAX_SHOT_HEIGHT = 6000  # a full-page screenshot stops here (galleries can be long)

# Installed before any script of a page runs: uncaught exceptions and rejected promises, kept on the page.
_RECORD_ERRORS = """
window.__atelierErrors = [];
window.addEventListener('error', e => {
  if (e.target && e.target !== window) return;  // a resource that failed to load: the console has it
  window.__atelierErrors.push(String(e.message || e.error));
});
window.addEventListener('unhandledrejection', e => window.__atelierErrors.push('unhandled rejection: ' + String(e.reason)));
"""
_LOADED = """
return document.readyState === 'complete' && Array.from(document.images).every(i => i.complete);
"""
_READ_PAGE = """
return {
  errors: window.__atelierErrors || [],
  images: Array.from(document.images).map(i => [i.getAttribute('src'), i.naturalWidth, i.naturalHeight]),
  tables: Array.from(document.querySelectorAll('table[id]')).map(t => [t.id, t.rows.length]),
  links: Array.from(document.querySelectorAll('a[href]')).map(a => [a.getAttribute('href'), a.href]),
  height: Math.max(document.body.scrollHeight, document.documentElement.scrollHeight),
};
"""


@dataclass
class Link:
    href: str  # as written in the page
    path: Path  # the local file it points to
    exists: bool


@dataclass
class PageCheck:
    """What a reader of one page meets."""

    url: str
    severe: list[str] = field(default_factory=list)  # console messages of level SEVERE, then JS exceptions
    images: list[tuple[str, int]] = field(default_factory=list)  # (src, naturalWidth)
    tables: dict[str, int] = field(default_factory=dict)  # table id -> rows (header rows included)
    links: list[Link] = field(default_factory=list)  # links to local files (not to anchors or the network)
    height: int = 0  # the document's height in CSS pixels
    seconds: float = 0.0  # load and read time

    @property
    def broken_images(self) -> list[str]:
        return [src for src, width in self.images if not width]

    @property
    def missing_links(self) -> list[str]:
        return [link.href for link in self.links if not link.exists]


def local_link(href: str, resolved: str) -> Link | None:
    """A link to a file on this machine, or None for an anchor, a mail address or a network address."""
    if href.startswith("#"):
        return None
    parts = urlsplit(resolved)
    if parts.scheme != "file":
        return None
    path = Path(unquote(parts.path))
    return Link(href, path, path.exists())


class Browser:
    """One headless chromium, reused page after page; ``close`` (or ``with``) quits it and its driver."""

    def __init__(self, window: tuple[int, int] = WINDOW, timeout: float = 30):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        for binary in (CHROMIUM, CHROMEDRIVER):
            if not os.access(binary, os.X_OK):
                raise RuntimeError(f"{binary} is missing: run scripts/install-system-deps.sh (make system-deps)")
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for arg in (
            "--headless=new",
            "--no-sandbox",  # the tests may run as root, where chromium's sandbox refuses to start
            "--disable-gpu",
            "--disable-dev-shm-usage",  # containers often have a tiny /dev/shm
            "--hide-scrollbars",
            "--force-device-scale-factor=1",
            f"--window-size={window[0]},{window[1]}",
        ):
            options.add_argument(arg)
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        self.window, self.timeout = window, timeout
        started = time.monotonic()
        self.driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
        try:
            self.driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": _RECORD_ERRORS})
        except BaseException:
            self.driver.quit()
            raise
        self.startup_seconds = time.monotonic() - started

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self.driver.quit()

    def _load(self, path: Path) -> str:
        from selenium.webdriver.support.ui import WebDriverWait

        path = Path(path).resolve()
        if not path.is_file():
            raise FileNotFoundError(path)  # chromium would show its own error page, with no console error
        url = path.as_uri()
        self.driver.get_log("browser")  # drop what earlier pages left in the log
        self.driver.get(url)
        WebDriverWait(self.driver, self.timeout, poll_frequency=0.05).until(lambda d: d.execute_script(_LOADED))
        if self.driver.current_url != url:
            raise RuntimeError(f"chromium shows {self.driver.current_url}, not {url}")
        return url

    def open_page(self, path: Path) -> PageCheck:
        """Load ``path`` (an HTML file), wait for it and its pictures, and read what the reader meets."""
        started = time.monotonic()
        url = self._load(path)
        page = self.driver.execute_script(_READ_PAGE)
        severe = [e["message"] for e in self.driver.get_log("browser") if e["level"] == "SEVERE"]
        links = [local_link(href, resolved) for href, resolved in page["links"]]
        return PageCheck(
            url=url,
            severe=severe + [f"uncaught: {e}" for e in page["errors"]],
            images=[(src, width) for src, width, _ in page["images"]],
            tables=dict(page["tables"]),
            links=[link for link in links if link],
            height=page["height"],
            seconds=time.monotonic() - started,
        )

    def screenshot(
        self, path: Path, out_png: Path, width: int = 1200, max_height: int = MAX_SHOT_HEIGHT
    ) -> tuple[int, int]:
        """A full-page PNG of ``path`` (its height capped at ``max_height`` CSS pixels), scaled down to at most
        ``width`` pixels wide and palette-quantized, so a README can carry it. Returns its size."""
        from PIL import Image

        self._load(path)
        height = self.driver.execute_script(_READ_PAGE)["height"]
        chrome = self.window[1] - self.driver.execute_script("return window.innerHeight")  # window minus viewport
        try:
            self.driver.set_window_size(self.window[0], min(height, max_height) + chrome)
            time.sleep(0.2)  # one layout and paint at the new size
            shot = Image.open(io.BytesIO(self.driver.get_screenshot_as_png())).convert("RGB")
        finally:
            self.driver.set_window_size(*self.window)
        if shot.width > width:
            shot = shot.resize((width, round(shot.height * width / shot.width)), Image.Resampling.LANCZOS)
        out_png = Path(out_png)
        out_png.parent.mkdir(parents=True, exist_ok=True)
        shot.quantize(colors=256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
            out_png, optimize=True
        )
        return shot.size


# --- The three reports on tiny data, built through real workers -------------------------------------------------
# Shared by the browser test and scripts/screenshots.py, so the README's pictures show what the test checks.
# ``stack`` is a tests.conftest.Stack: a store, a broker and a running worker.

# 2 x 2 cells sharing one features job: two parameters vary, so the sweep report draws its heatmap
SWEEP = [*MODEL, "--head", "gap", "--dense1", "8,16", "--lr", "1e-3,3e-3", "--epochs", "2"]
DOSES = "0,1e2"
STYLE = [  # test_stylize.TINY (one pair per cell, 3 Adam steps at 24 px), a random VGG, content init
    *("--per-cell", "1", "--steps", "3", "--size", "24", "--chunk", "4", "--device-batch", "3"),
    *("--optimizer", "adam", "--norm-images", "4", "--vgg-weights", "random", "--init", "content"),
]


def wait_group(stack, group: str, timeout: float = 240) -> list[dict]:
    """Every job of a sweep or a style batch (they share its id as their group), once all have ended."""
    deadline = time.monotonic() + timeout
    while True:
        jobs = stack.query(f"SELECT id, kind, status, error FROM jobs WHERE group_id = '{group}'")
        if jobs and all(j["status"] in ("succeeded", "failed", "cancelled") for j in jobs):
            assert all(j["status"] == "succeeded" for j in jobs), jobs
            return jobs
        if time.monotonic() > deadline:
            raise TimeoutError(f"jobs of {group} still running after {timeout}s: {jobs}")
        time.sleep(0.5)


def tiny_sweep(stack, dataset: str) -> str:
    """A 4-cell feature-extract grid; its sweep id."""
    out = stack.json("grid", "--dataset", dataset, *SWEEP)
    wait_group(stack, out["sweep"])
    return out["sweep"]


def tiny_batch(stack, dataset: str, run: int) -> str:
    """One stylization per cross-artist cell at two doses (12); its batch id."""
    out = stack.json("stylize", "--dataset", dataset, "--classifier", str(run), "--style-weight", DOSES, *STYLE)
    wait_group(stack, out["batch"])
    return out["batch"]


def write_report(stack, ref: str | int, out: Path, *extra: str) -> Path:
    """`atelier report REF --out DIR`; the page it wrote."""
    shown = stack.atelier("report", str(ref), "--out", str(out), *extra).stdout
    page = Path(out) / "index.html"
    assert f"wrote {page}" in shown, shown
    return page
