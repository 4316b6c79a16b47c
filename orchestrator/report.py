"""A style batch as one self-contained HTML page: the attribution table, the plots, and the
stylized works grouped by whom the classifier named.

The page is ``index.html`` with every image beside it (nothing fetched from the network, so it
opens from ``file://``), and every number in a table comes with the query that produced it, in a
collapsible block, to re-run with ``atelier query``. Galleries are sampled with a seed, so a
batch of any size gives a page of bounded size.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from html import escape
from pathlib import Path

from core.artifacts import artifact_path
from orchestrator.attribution import Stratum
from orchestrator.stats import OUTCOMES

THUMB_PX = 160  # long side of a gallery thumbnail
STYLE = """
body { font: 15px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 78em; padding: 0 1em; color: #222 }
table { border-collapse: collapse; margin: .5em 0 } th, td { border: 1px solid #ccc; padding: .25em .5em }
th { background: #f3f3f3 } td.num { text-align: right; font-variant-numeric: tabular-nums }
.warning { color: #a15c00 } pre { background: #f6f6f6; padding: .5em; overflow-x: auto; white-space: pre-wrap }
.gallery { display: flex; flex-wrap: wrap; gap: 1em } figure { margin: 0; border: 1px solid #ddd; padding: .4em }
figure img { height: 110px; margin-right: 2px } figcaption { font-size: 12px; max-width: 360px }
img.plot { max-width: 100%; border: 1px solid #eee }
"""


@dataclass
class Section:
    title: str
    html: str
    queries: list[str] = field(default_factory=list)


def page(title: str, intro: list[str], sections: list[Section]) -> str:
    """The whole document: a title, the lines that say what produced the numbers, then each section."""
    lines = "".join(f'<li class="{"warning" if s.startswith("warning") else ""}">{escape(s)}</li>' for s in intro)
    body = "".join(f"<section><h2>{escape(s.title)}</h2>{s.html}{queries_block(s.queries)}</section>" for s in sections)
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{escape(title)}</h1><ul>{lines}</ul>{body}</body></html>\n"
    )


def queries_block(queries: list[str]) -> str:
    if not queries:
        return ""
    shown = "".join(f"<pre>atelier query {escape(_shell_quote(q))}</pre>" for q in queries)
    return f"<details><summary>the queries behind these numbers</summary>{shown}</details>"


def _shell_quote(sql: str) -> str:
    return '"' + sql.replace("\\", "\\\\").replace('"', '\\"') + '"'


def strata_table(result: list[Stratum]) -> str:
    """One row per dose: n, distinct pairs and images, each outcome's rate with both intervals."""
    head = "".join(
        f"<th>{escape(h)}</th>"
        for h in ("β", "n", "pairs", "content imgs", "style imgs", *OUTCOMES, "median β·style/α·content")
    )
    rows = []
    for r in result:
        cells = [f"{v:g}" if isinstance(v, float) else str(v) for v in r.key]
        cells += [str(r.n), str(r.pairs), str(r.content_images), str(r.style_images)]
        for o in OUTCOMES:
            (bl, bh), (wl, wh) = r.bootstrap[o], r.wilson[o]
            cells.append(f"{r.rate(o):.2f} ({bl:.2f}–{bh:.2f}; W {wl:.2f}–{wh:.2f})")
        cells.append("" if r.median_loss_ratio is None else f"{r.median_loss_ratio:.3g}")
        rows.append("<tr>" + "".join(f'<td class="num">{escape(c)}</td>' for c in cells) + "</tr>")
    return f'<table id="attribution"><tr>{head}</tr>{"".join(rows)}</table>'


def plot_images(paths: list[Path]) -> str:
    return "".join(f'<p><img class="plot" src="{escape(p.name)}" alt="{escape(p.stem)}"></p>' for p in paths)


def sample_by_outcome(rows: list[dict], per_outcome: int, seed: int) -> dict[str, list[dict]]:
    """Up to ``per_outcome`` stylizations of each outcome, drawn with ``seed`` (the same page every time)."""
    rng = random.Random(seed)
    grouped = {o: sorted((r for r in rows if r["outcome"] == o), key=lambda r: r["pair_hash"]) for o in OUTCOMES}
    return {o: rng.sample(g, min(per_outcome, len(g))) for o, g in grouped.items()}


def thumbnail(artifacts: Path, relative: str, out: Path) -> str:
    """A small JPEG of an artifact PNG beside the page (made once); its path relative to the page."""
    from PIL import Image  # the gallery is the only place the report decodes images

    name = Path("thumbs") / (relative.replace("/", "_").rsplit(".", 1)[0] + ".jpg")
    target = out / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(artifact_path(artifacts, relative)) as img:
            img = img.convert("RGB")
            img.thumbnail((THUMB_PX, THUMB_PX))
            img.save(target, quality=88)
    return name.as_posix()


def gallery(samples: dict[str, list[dict]], controls: dict[int, str], artifacts: Path, out: Path) -> str:
    """Per outcome: each sampled work with its content and style images as the classifier saw them."""
    parts = []
    for outcome, rows in samples.items():
        figures = []
        for r in rows:
            pictures = [controls.get(r["content_image_id"]), controls.get(r["style_image_id"]), r["image_path"]]
            imgs = "".join(
                f'<img src="{escape(thumbnail(artifacts, p, out))}" alt="{alt}">'
                for p, alt in zip(pictures, ("content", "style", "stylized"))
                if p
            )
            caption = (
                f"{r['content_artist']} (content) × {r['style_artist']} (style), β = {r['style_weight']:g}: "
                f"named {r['predicted']}"
            )
            figures.append(f"<figure>{imgs}<figcaption>{escape(caption)}</figcaption></figure>")
        parts.append(
            f'<h3>{escape(outcome)} ({len(rows)} shown)</h3><div class="gallery" id="gallery-{outcome}">'
            f"{''.join(figures) or '<p>none</p>'}</div>"
        )
    return "".join(parts)
