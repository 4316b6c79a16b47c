"""The pieces every report page is made of: the page, its sections, tables, thumbnails, galleries and pagers.

A report is ``index.html`` with every image beside it (nothing fetched from the network, so it opens from
``file://``). Every number in a table comes from a query the page prints in a collapsible block, to re-run
with ``atelier query``: a report reads its numbers with ``fetch``, which runs the very SQL it prints, so the
page and the printed query cannot drift apart. Galleries are sampled with a seed, so a study of any size gives
pages of bounded size. The assembly of each report lives in run_page, sweep_page and batch_page.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from sqlalchemy import text

from core.artifacts import artifact_path
from core.errors import ConfigError

STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #222 }
table { border-collapse: collapse; margin: .5em 0 } th, td { border: 1px solid #ccc; padding: .25em .5em }
th { background: #f3f3f3 } td.num { text-align: right; font-variant-numeric: tabular-nums }
.warning { color: #a15c00 } pre { background: #f6f6f6; padding: .5em; overflow-x: auto; white-space: pre-wrap }
.gallery { display: flex; flex-wrap: wrap; gap: 1em } figure { margin: 0; border: 1px solid #ddd; padding: .4em }
figure img { height: 110px; margin-right: 2px } figcaption { font-size: 12px; max-width: 360px }
img.plot { max-width: 100%; border: 1px solid #eee } nav { margin: .5em 0 } .missing { color: #888 }
"""


@dataclass
class Section:
    title: str
    html: str
    queries: list[str] = field(default_factory=list)


def page(title: str, intro: list[str], sections: list[Section], nav: str = "") -> str:
    """The whole document: a title, the lines that say what produced the numbers, then each section."""
    lines = "".join(f'<li class="{"warning" if s.startswith("warning") else ""}">{escape(s)}</li>' for s in intro)
    body = "".join(f"<section><h2>{escape(s.title)}</h2>{s.html}{queries_block(s.queries)}</section>" for s in sections)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1>{nav}<ul>{lines}</ul>{body}</body></html>\n"
    )


def queries_block(queries: list[str]) -> str:
    if not queries:
        return ""
    shown = "".join(f"<pre>atelier query {escape(_shell_quote(q))}</pre>" for q in queries)
    return f"<details><summary>the queries behind these numbers</summary>{shown}</details>"


def _shell_quote(sql: str) -> str:
    return '"' + sql.replace("\\", "\\\\").replace('"', '\\"') + '"'


def sql_literal(value: Any) -> str:
    """A value as SQLite and PostgreSQL both read it inside a query (ids and numbers; text single-quoted)."""
    if isinstance(value, bool) or value is None:
        raise TypeError(f"no literal for {value!r}")
    if isinstance(value, int | float):
        return repr(value)
    return "'" + str(value).replace("'", "''") + "'"


def inline(sql: str, params: dict[str, Any]) -> str:
    """``sql`` with each ``:name`` replaced by its value as a literal: the query as a reader re-runs it."""
    for name, value in params.items():
        sql = re.sub(rf":{name}\b", lambda _m, v=value: sql_literal(v), sql)
    return sql


def fetch(session, sql: str, **params: Any) -> tuple[list[dict], str]:
    """(rows as dicts, the query as printed): the numbers a page shows come from exactly the SQL it prints."""
    rows = [dict(r) for r in session.execute(text(sql), params).mappings()]
    return rows, inline(sql, params)


def json_value(value: Any) -> Any:
    """A JSON column read through plain SQL: SQLite hands back its text, PostgreSQL the parsed value."""
    return json.loads(value) if isinstance(value, str) else value


def number(value: Any, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}" if value == 0 or 1e-3 <= abs(value) < 1000 else f"{value:g}"
    return str(value)


def html_table(table_id: str, headers: Sequence[str], rows: Sequence[Sequence[Any]], raw: int = 0) -> str:
    """A table with an id (tests count its rows: one header row, then one per data row). Numbers right-aligned;
    the first ``raw`` columns of each row are HTML already (links), the rest are escaped."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, v in enumerate(row):
            shown = v if i < raw else escape(number(v))
            cells.append(f'<td class="num">{shown}</td>' if isinstance(v, int | float) else f"<td>{shown}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f'<table id="{escape(table_id)}"><tr>{head}</tr>{"".join(body)}</table>'


def plot_images(paths: list[Path]) -> str:
    return "".join(f'<p><img class="plot" src="{escape(p.name)}" alt="{escape(p.stem)}"></p>' for p in paths)


def not_computed(reason: str) -> str:
    return f'<p class="missing">not computed: {escape(reason)}</p>'


def copy_thumbnail(artifacts: Path, source: Path, key: str, out: Path) -> str | None:
    """A thumbnail of ``source`` beside the page; its path relative to the page, None when the picture is gone.

    It is made once into the artifacts (``corpus.thumbs``, under the name ``key`` gives it there) and copied
    here, so a report never decodes a full-size picture twice. The copy is named by a hash of the key: any
    file name in a dataset becomes a plain ASCII one that needs no quoting in the page."""
    from corpus.thumbs import ensure_thumbnail, thumb_relative  # PIL: only when a report is written

    name = f"thumbs/{hashlib.sha256(key.encode()).hexdigest()[:20]}.jpg"
    target = out / name
    if not target.exists():
        try:
            made = ensure_thumbnail(source, artifact_path(artifacts, thumb_relative(key)))
        except (OSError, ConfigError):  # a moved dataset, a deleted artifact: the page says so instead of failing
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(made, target)
    return name


def copy_artifact(artifacts: Path, relative: str, out: Path, name: str) -> str | None:
    """The artifact at ``relative`` (a figure an inspect job made) copied to ``out / name``; None when missing."""
    target = out / name
    try:
        source = artifact_path(artifacts, relative)  # stays under the artifacts root, whatever a file says
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
    except (OSError, ConfigError):
        return None
    return name


def artifact_thumbnail(artifacts: Path, relative: str, out: Path) -> str | None:
    """``copy_thumbnail`` of an artifact (a stylized work, a control) by its path relative to the artifacts root."""
    try:
        source = artifact_path(artifacts, relative)
    except ConfigError:
        return None
    return copy_thumbnail(artifacts, source, relative, out)


def pages_of(rows: list[dict], per_page: int, pages: int, seed: int | str, key: str) -> list[list[dict]]:
    """Up to ``1 + pages`` pages of at most ``per_page`` rows, drawn without overlap in a seeded order (the first
    page is the index's; the same rows and seed give the same pages). Rows are sorted by ``key`` first, so the
    order the store returned them in does not matter. Always at least one (possibly empty) page."""
    if per_page <= 0:
        return [[]]
    ordered = sorted(rows, key=lambda r: r[key])
    random.Random(seed).shuffle(ordered)
    shown = ordered[: per_page * (1 + max(pages, 0))]
    return [shown[i : i + per_page] for i in range(0, len(shown), per_page)] or [[]]


def figure(images: list[tuple[str | None, str]], caption: str) -> str:
    """One gallery item: its pictures (path beside the page, alt text; a missing one is said so) and a caption."""
    imgs = "".join(
        f'<img src="{escape(src)}" alt="{escape(alt)}">'
        if src
        else f'<span class="missing">[{escape(alt)} missing]</span>'
        for src, alt in images
    )
    return f"<figure>{imgs}<figcaption>{escape(caption)}</figcaption></figure>"


def gallery(gallery_id: str, figures: list[str]) -> str:
    return f'<div class="gallery" id="gallery-{escape(gallery_id)}">{"".join(figures) or "<p>none</p>"}</div>'


@dataclass
class Inspection:
    """What the inspect job computed for a report: its folder under the artifacts root and the two files."""

    output: str
    map: dict[str, Any]
    activations: list[dict[str, Any]]


NO_MAP = "--no-map"


def map_method(found: dict[str, Any]) -> str:
    """How an inspect job's map was drawn: a t-SNE with the perplexity it used (capped for a small test split),
    or, for too few test images, their first two principal axes."""
    method = found.get("method") or "t-SNE"
    if method != "t-SNE":
        return f"{method}: too few test images for a t-SNE"
    asked, used = found.get("perplexity"), found.get("perplexity_used") or found.get("perplexity")
    capped = f", capped from {asked:.3g}" if isinstance(asked, int | float) and asked != used else ""
    return f"t-SNE, perplexity {used:.3g}{capped}, seed {found.get('seed')}"


def run_inspection(lab, run_id: int, batch_id: str | None, seed: int) -> Inspection:
    """Run (or reuse) the inspect job of a run, and of a batch when given, and read what it wrote. Called before
    anything is written: a failed job leaves no output folder behind."""
    from core.inspection import read_inspection
    from orchestrator.reports.inspect import ensure_inspection  # submits the job (or finds a finished one) and waits

    output = ensure_inspection(lab, run_id, batch_id, seed=seed)
    found, activations = read_inspection(lab.settings.artifacts, output)
    return Inspection(output, found, activations)
