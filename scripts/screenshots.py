"""The README's pictures of atelier's three HTML reports (run, sweep, style batch), taken in Debian's headless
chromium the way tests/integration/test_report_browser.py looks at the pages (both use tests/browser.py).

    python -m scripts.screenshots --out docs/
        builds a tiny synthetic lab (its own redis-server and worker, in a temporary folder: 3 artists,
        a 2-epoch classifier, a 2-cell sweep, a 12-stylization batch) and photographs its three reports
    python -m scripts.screenshots --run DIR --sweep DIR --batch DIR --out docs/
        photographs report folders that already exist (each holds an index.html); only those named

Writes OUT/report-run.png, OUT/report-sweep.png, OUT/report-batch.png. A page with a console error, a picture
that does not decode or a link to a missing file is refused, not photographed. Needs scripts/install-system-deps.sh
(chromium, chromedriver) and the dev extras (selenium).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from tests import browser as tiny  # shared with the browser test
from tests.browser import Browser

ROOT = Path(__file__).resolve().parents[1]

KINDS = ("run", "sweep", "batch")
WIDTH = 1000  # pixels of a committed picture
MAX_HEIGHT = 4000  # CSS pixels of page photographed: the top of a long gallery is enough for a README


def shoot(reports: dict[str, Path], out: Path, browser: Browser | None = None) -> dict[str, Path]:
    """``out/report-KIND.png`` for each report folder, after the page passed the browser test's checks."""
    own = browser is None
    browser = browser or Browser()
    written = {}
    try:
        for kind, folder in reports.items():
            page = Path(folder) / "index.html"
            check = browser.open_page(page)
            problems = check.severe + [f"broken picture {s}" for s in check.broken_images]
            problems += [f"missing link target {h}" for h in check.missing_links]
            if problems:
                raise SystemExit(f"{page}: not photographed:\n  " + "\n  ".join(problems))
            png = Path(out) / f"report-{kind}.png"
            size = browser.screenshot(page, png, width=WIDTH, max_height=MAX_HEIGHT)
            print(f"{png}: {size[0]}x{size[1]} px, {png.stat().st_size // 1024} KiB (page {check.height} px tall)")
            written[kind] = png
    finally:
        if own:
            browser.close()
    return written


def build(workdir: Path) -> dict[str, Path]:
    """The three reports of a tiny synthetic lab; a report that cannot be written is said and left out."""
    from tests.conftest import make_stack
    from tests.services import RedisServer

    redis = RedisServer(workdir / "redis")
    stack = make_stack(workdir, redis.url(1))
    reports = {}
    try:
        stack.start_worker()
        dataset = tiny.tiny_dataset(stack, "tiny")
        run = tiny.tiny_run(stack, dataset)
        refs = {"run": run, "sweep": tiny.tiny_sweep(stack, dataset), "batch": tiny.tiny_batch(stack, dataset, run)}
        for kind, ref in refs.items():
            folder = workdir / f"report-{kind}"
            try:
                tiny.write_report(stack, ref, folder)
            except AssertionError as e:
                print(f"no {kind} report: {e}", file=sys.stderr)
                continue
            reports[kind] = folder
    finally:
        stack.stop()
        redis.stop()
    return reports


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    for kind in KINDS:
        parser.add_argument(f"--{kind}", type=Path, metavar="DIR", help=f"an existing {kind} report folder")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="where the PNGs go (default: docs/)")
    parser.add_argument("--workdir", type=Path, help="keep the tiny lab here (default: a temporary folder)")
    args = parser.parse_args(argv)
    given = {kind: getattr(args, kind) for kind in KINDS if getattr(args, kind)}
    if given:
        written = shoot(given, args.out)
        return 0 if len(written) == len(given) else 1
    with tempfile.TemporaryDirectory(prefix="atelier-shots-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        written = shoot(build(workdir), args.out)
    return 0 if len(written) == len(KINDS) else 1


if __name__ == "__main__":
    sys.exit(main())
