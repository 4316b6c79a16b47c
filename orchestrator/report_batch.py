"""A style batch's report: the attribution table by dose, the plots, where the stylized works fall in the
classifier's feature space, and the stylized works grouped by whom the classifier named, over several pages.

Reading (``collect``) and writing (``write``) are apart: every query, the analysis and the inspect job run
before the output folder exists, so a bad reference or a failed job leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import func, select

from orchestrator import report
from orchestrator.attribution import CONDITION_TEXT, Stratum, chance_text, counts_sql, pairs_sql, strata
from orchestrator.batches import METHOD, batch_totals, control_paths, describe_batch
from orchestrator.report import Section, escape
from orchestrator.stats import OUTCOMES, chance_levels

RESAMPLES = 2000
OUTCOME_TEXT = {
    "content": "the classifier named the content artist",
    "style": "the classifier named the style artist",
    "other": "the classifier named another artist",
}


@dataclass
class BatchData:
    batch_id: str
    dataset: str
    classes: list[str]
    intro: list[str]
    rows: list[dict]  # the kept cross-artist stylizations (attribution_pairs)
    result: list[Stratum]
    controls: dict[int, str]
    queries: list[str]
    run_id: int
    unfinished: int = 0  # the batch's jobs still queued or running: its map waits until they have ended
    no_map: str = report.NO_MAP  # why there is no inspection, when there is none
    inspection: report.Inspection | None = None


def collect(session, batch_id: str, seed: int) -> BatchData:
    """The batch's rows and counts, read with the queries the page prints, and the analysis."""
    from db.models import FINISHED_STATES, Dataset, Job, Run, StyleBatch

    batch = session.get(StyleBatch, batch_id)  # resolved by the command (lookups.find_report_target)
    run, ds = session.get(Run, batch.classifier_run_id), session.get(Dataset, batch.dataset_id)
    rows, q_pairs = report.fetch(session, pairs_sql("both"), batch=batch.id)
    counts, q_counts = report.fetch(session, counts_sql("both", "style-weight"), batch=batch.id)
    totals = batch_totals(session, batch.id)
    k = len(ds.classes)
    intro = [
        f"batch {batch.id} on {ds.name}: {totals['asked']} stylizations asked, {totals['cross']} cross-artist "
        f"done, {totals['same']} same-artist (their own outcome, never pooled)",
        *describe_batch(batch, run, k),
        f"kept {len(rows)} of {totals['cross']} cross-artist stylizations: {CONDITION_TEXT['both']}",
    ]
    unfinished = session.scalar(
        select(func.count()).select_from(Job).where(Job.group_id == batch.id, Job.status.not_in(FINISHED_STATES))
    )
    return BatchData(
        unfinished=unfinished,
        no_map=f"{unfinished} job(s) of the batch are still queued or running; the map is drawn once it has ended"
        if unfinished
        else report.NO_MAP,
        batch_id=batch.id,
        dataset=ds.name,
        classes=list(ds.classes),
        intro=intro,
        rows=rows,
        result=strata(counts, rows, "style-weight", RESAMPLES, seed),
        controls=control_paths(session, run.id, batch.spec["style"]["size"]),
        queries=[q_counts, q_pairs],
        run_id=run.id,
    )


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


def map_section(data: BatchData, out: Path) -> Section:
    """Where the stylized works fall in the classifier's feature space, drawn over its test images."""
    from orchestrator import plots  # matplotlib: only when a report is written

    title = "Where the stylized works fall in the classifier's feature space"
    if data.inspection is None:
        return Section(title, report.not_computed(data.no_map))
    m, tag = data.inspection.map, data.batch_id[:8]
    how = report.map_method(m)
    picture = plots.style_map(
        m.get("points", []),
        data.classes,
        out / f"map-{tag}.png",
        f"batch {tag}: run {data.run_id}'s {m.get('layer', 'features')}\n({how})",
    )
    if picture is None:
        return Section(title, report.not_computed("the map holds no points"))
    stylized = len({p.get("stylization_id") for p in m.get("points", []) if p["kind"] == "stylized"})
    note = (
        f"<p>The test images' features in two dimensions ({escape(how)}), coloured by artist; the "
        f"{stylized} stylizations of a few sampled content images are placed into the same map without moving "
        "it. From each content image (star) an arrow runs through its stylizations by one style artist in order "
        "of rising β, coloured by that style artist.</p>"
    )
    return Section(title, note + report.plot_images([picture]))


def work_figure(r: dict, controls: dict[int, str], artifacts: Path, out: Path) -> str:
    """A stylized work beside its content and style images as the classifier saw them (their controls)."""
    pictures = [controls.get(r["content_image_id"]), controls.get(r["style_image_id"]), r["image_path"]]
    images = [
        (report.artifact_thumbnail(artifacts, p, out), alt)
        for p, alt in zip(pictures, ("content", "style", "stylized"))
        if p
    ]
    caption = (
        f"{r['content_artist']} (content) × {r['style_artist']} (style), β = {r['style_weight']:g}: "
        f"named {r['predicted']}"
    )
    return report.figure(images, caption)


def gallery_file(outcome: str, k: int) -> str:
    """The page that holds an outcome's k-th page of works (0: the index)."""
    return "index.html" if k == 0 else f"gallery-{outcome}-{k}.html"


def pager_nav(outcome: str, k: int, n: int) -> str:
    """Links between an outcome's ``n`` pages, seen from page ``k``."""
    links = ['<a href="index.html">the report</a>'] if k > 0 else []
    if k > 1:
        links.append(f'<a href="{gallery_file(outcome, k - 1)}">previous page</a>')
    if k + 1 < n:
        links.append(f'<a href="{gallery_file(outcome, k + 1)}">next page</a>')
    return f"<nav>{' · '.join(links)}</nav>" if links else ""


def galleries(data: BatchData, artifacts: Path, out: Path, per_outcome: int, pages: int, seed: int) -> str:
    """The index's gallery of each outcome (its first page), and the further pages, each its own file."""
    parts = []
    for outcome in OUTCOMES:
        mine = [r for r in data.rows if r["outcome"] == outcome]
        paged = report.pages_of(mine, per_outcome, pages, f"{seed}-{outcome}", "pair_hash")
        for k, shown in enumerate(paged):
            head = f"{outcome} ({len(shown)} shown of {len(mine)}, page {k + 1} of {len(paged)})"
            html = (
                f"<h3>{escape(head)}</h3>"
                + report.gallery(outcome, [work_figure(r, data.controls, artifacts, out) for r in shown])
                + pager_nav(outcome, k, len(paged))
            )
            if k == 0:
                parts.append(html)
                continue
            intro = [
                f"batch {data.batch_id}: stylized works where {OUTCOME_TEXT[outcome]}, drawn with seed {seed}; "
                "no work appears on two pages"
            ]
            text = report.page(
                f"atelier style batch {data.batch_id[:8]}: {outcome}, page {k + 1}",
                intro,
                [Section(f"Stylized works by outcome: {outcome}", html)],
            )
            (out / gallery_file(outcome, k)).write_text(text, encoding="utf-8")
    return "".join(parts)


def write(data: BatchData, artifacts: Path, out: Path, per_outcome: int, pages: int, seed: int) -> Path:
    """``out/index.html``, the gallery pages and every picture beside them."""
    from orchestrator import plots  # matplotlib: only when a report is written

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("gallery-*-*.html"):  # a folder reused for a report with more pages than this one
        stale.unlink()
    k, tag = len(data.classes), data.batch_id[:8]
    pictures = plots.attribution_plots(data.rows, data.result, chance_levels(k), artifacts, data.controls, out, tag)
    method = METHOD.format(resamples=RESAMPLES, seed=seed)
    sections = [
        Section(
            "Whom the classifier names, by dose",
            strata_table(data.result) + f"<p>{escape(chance_text(k))}</p><p>{escape(method)}</p>",
            data.queries,
        ),
        Section("Dose-response, heatmaps and contact sheet", report.plot_images(pictures)),
        map_section(data, out),
        Section("Stylized works by outcome", galleries(data, artifacts, out, per_outcome, pages, seed)),
    ]
    index = out / "index.html"
    index.write_text(report.page(f"atelier style batch {tag}", data.intro, sections), encoding="utf-8")
    return index
