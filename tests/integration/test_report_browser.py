"""The three HTML reports (run, sweep, style batch), built on tiny data through a real worker and opened in a
real headless browser (Debian's chromium, driven by Selenium: tests/browser.py): no console error, every
picture decodes, each table has its rows, every link to a local file leads somewhere. And the script that
takes the README's pictures (scripts/screenshots.py) still takes one."""

from pathlib import Path

import pytest
from PIL import Image, ImageStat

from scripts import screenshots as script
from tests import browser as tiny
from tests.browser import Browser, PageCheck
from tests.tiny_classifier import ARTISTS

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def chromium():
    """One browser for the session: it takes a while to start on two cores."""
    with Browser() as b:
        yield b


@pytest.fixture(scope="module")
def lab(classifier):
    """A dataset of 3 synthetic artists (9 works each, 40 px) and a baseline CNN trained on it for 2 epochs."""
    return classifier


@pytest.fixture(scope="module")
def batch_report(sqlite_stack, lab, tmp_path_factory):
    dataset, run = lab
    batch = tiny.tiny_batch(sqlite_stack, dataset, run)
    return batch, tiny.write_report(sqlite_stack, batch, tmp_path_factory.mktemp("report-batch"))


def assert_reads_well(check: PageCheck) -> None:
    assert not check.severe, f"{check.url}: console errors {check.severe}"
    assert not check.broken_images, f"{check.url}: pictures that do not decode {check.broken_images}"
    assert not check.missing_links, f"{check.url}: links to missing files {check.missing_links}"


def open_report(chromium: Browser, page: Path) -> tuple[PageCheck, list[PageCheck]]:
    """The report's page, checked, and every local page it leads to (gallery pages, run reports), checked too."""
    check = chromium.open_page(page)
    assert_reads_well(check)
    assert check.images, f"{check.url}: no pictures"
    seen, todo, linked = {page.resolve()}, [check], []
    while todo:
        for link in todo.pop().links:
            target = link.path.resolve()
            if target.suffix == ".html" and target not in seen:
                seen.add(target)
                linked.append(chromium.open_page(target))
                assert_reads_well(linked[-1])
                todo.append(linked[-1])
    return check, linked


def test_batch_report_in_a_browser(sqlite_stack, batch_report, chromium):
    batch, page = batch_report
    check, _ = open_report(chromium, page)
    doses = sqlite_stack.query(
        "SELECT DISTINCT level FROM attribution_pairs WHERE batch_id = "
        f"'{batch}' AND outcome != 'same' AND content_correct AND style_correct"
    )
    # a header, the control arm, then a row per dose with kept stylizations
    assert check.tables["attribution"] == 1 + (1 if doses else 0) + len(doses)


def test_the_screenshot_script_photographs_a_report(batch_report, chromium, tmp_path):
    """scripts/screenshots.py, as the README's pictures were made: a PNG that decodes, small and not blank."""
    _, page = batch_report
    written = script.shoot({"batch": page.parent}, tmp_path, chromium)
    assert written == {"batch": tmp_path / "report-batch.png"}
    with Image.open(written["batch"]) as png:
        png.load()
        assert 200 <= png.width <= script.WIDTH and png.height >= 200
        grey = png.convert("L")
        lo, hi = grey.getextrema()
        assert hi - lo > 100 and ImageStat.Stat(grey).stddev[0] > 10  # text and pictures, not one colour


def test_run_report_in_a_browser(sqlite_stack, lab, chromium, tmp_path):
    _, run = lab
    check, _ = open_report(chromium, tiny.write_report(sqlite_stack, run, tmp_path / "report-run"))
    assert check.tables.get("config", 0) >= 1
    assert check.tables["per-class"] == 1 + ARTISTS  # a header, then a row per artist


def test_sweep_report_in_a_browser(sqlite_stack, lab, chromium, tmp_path):
    dataset, _ = lab
    sweep = tiny.tiny_sweep(sqlite_stack, dataset)
    cells = sqlite_stack.query(f"SELECT run_id FROM grid_leaderboard WHERE sweep_id = '{sweep}'")
    check, linked = open_report(chromium, tiny.write_report(sqlite_stack, sweep[:8], tmp_path / "report-sweep"))
    assert check.tables["leaderboard"] == 1 + len(cells)  # a header, then a row per cell
    runs = [page for page in linked if "per-class" in page.tables]
    assert runs, "the sweep report links to no run report"
    assert all(page.tables["per-class"] == 1 + ARTISTS and page.images for page in runs)
