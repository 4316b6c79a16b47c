"""A report page as the tests read it, without a browser: strict about its HTML, and what it shows."""

from __future__ import annotations

from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

from PIL import Image

VOID = {"meta", "img", "br", "hr", "link", "input"}


class Page(HTMLParser):
    """Checks what a browser would forgive: every element closed in order, ids unique; and collects images,
    links, table rows (per table id), figures and stylized works (per gallery id) and the printed queries."""

    def __init__(self, html: str):
        super().__init__()
        self.stack, self.errors, self.ids = [], [], Counter()
        self.images, self.links, self.rows, self.figures, self.queries = [], [], Counter(), Counter(), []
        self.stylized: dict[str, list[str]] = {}
        self._table = self._gallery = None
        self._pre = False
        self.feed(html)
        self.close()
        assert not self.errors and not self.stack, (self.errors, self.stack)
        assert all(n == 1 for n in self.ids.values()), self.ids

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag not in VOID:
            self.stack.append(tag)
        if "id" in a:
            self.ids[a["id"]] += 1
        if tag == "img":
            self.images.append(a["src"])
            if a.get("alt") == "stylized" and self._gallery:
                self.stylized.setdefault(self._gallery, []).append(a["src"])
        elif tag == "a":
            self.links.append(a["href"])
        elif tag == "table":
            self._table = a.get("id")
        elif tag == "tr" and self._table:
            self.rows[self._table] += 1
        elif tag == "div" and a.get("id", "").startswith("gallery-"):
            self._gallery = a["id"].removeprefix("gallery-")
            self.figures[self._gallery] += 0
        elif tag == "figure" and self._gallery:
            self.figures[self._gallery] += 1
        elif tag == "pre":
            self._pre = True

    def handle_endtag(self, tag):
        if tag in VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
        else:
            self.stack.pop()
        if tag == "table":
            self._table = None
        elif tag == "div":
            self._gallery = None
        elif tag == "pre":
            self._pre = False

    def handle_data(self, data):
        if self._pre and data.startswith("atelier query "):
            self.queries.append(data.removeprefix("atelier query ").strip('"').replace('\\"', '"'))


def read_page(path: Path) -> Page:
    """The page at ``path`` parsed, every picture it shows decoded and every page it links to present."""
    page = Page(path.read_text(encoding="utf-8"))
    for src in page.images:
        with Image.open(path.parent / src) as img:
            img.load()
    for href in page.links:
        assert (path.parent / href).is_file(), href
    return page
