"""A style batch's report: the attribution table by dose (with the control arm), the contrasts on the same pairs,
the baselines, the d50 per style artist and its curves, the plots, where the stylized works fall in the
classifier's feature space, and the stylized works grouped by whom the classifier named, over several pages.
The numbers are the analysis package's, as `atelier results attribution` and `dose-response` print them.

Reading (``collect``) and writing (``write``) are apart: every query, the analysis and the inspect job run
before the output folder exists, so a bad reference or a failed job leaves nothing behind.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
from sqlalchemy import func, select

import analysis
from analysis.records import OUTCOMES
from orchestrator.reports import attribution as view
from orchestrator.reports import page
from orchestrator.reports.page import Section, escape

D50_BY = "style-artist"  # the headline: per style artist
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
    study: view.Study
    fits: pd.DataFrame  # d50 per style artist
    controls: dict[int, str]
    queries: list[str]
    run_id: int
    unfinished: int = 0  # the batch's jobs still queued or running: its map waits until they have ended
    no_map: str = page.NO_MAP  # why there is no inspection, when there is none
    inspection: page.Inspection | None = None
    attributors: dict[str, pd.DataFrame] = field(default_factory=dict)  # key -> records, when more than one answered


def collect(session, batch_id: str, seed: int) -> BatchData:
    """The batch's records and the analysis, read in one snapshot (``orchestrator.reports.attribution.read_study``)."""
    from db.models import FINISHED_STATES, Job

    study = view.analyse(view.read_study(session, batch_id, "both"), "dose")
    q_rows = page.inline(analysis.kept_sql("both"), {"batch": study.info["batch_id"]})  # the rows it counts
    # the default conditioning's counts per (treatment, level), as the SQL view holds them
    q_counts = page.inline("SELECT * FROM attribution_by_weight WHERE batch_id = :batch", {"batch": batch_id})
    unfinished = session.scalar(
        select(func.count()).select_from(Job).where(Job.group_id == batch_id, Job.status.not_in(FINISHED_STATES))
    )
    return BatchData(
        unfinished=unfinished,
        no_map=f"{unfinished} job(s) of the batch are still queued or running; the map is drawn once it has ended"
        if unfinished
        else page.NO_MAP,
        batch_id=study.info["batch_id"],
        dataset=study.info["dataset"],
        classes=list(study.info["classes"]),
        intro=study.intro,
        rows=study.kept_rows(),
        study=study,
        fits=analysis.dose_response(study.records, D50_BY, "both"),
        controls=view.control_images(session, study),
        queries=[q_counts, q_rows],
        run_id=study.info["run_id"],
        attributors=attributor_records(session, study.info["batch_id"]),
    )


def attributor_records(session, batch_id: str) -> dict[str, pd.DataFrame]:
    """Every attributor's records on the batch (``atelier attribute``), the batch's classifier first; empty when
    it is the only one."""
    from analysis.attributors import attributors_of, load_attributions

    keys = list(attributors_of(session, batch_id)["key"])
    return {k: load_attributions(session, batch_id, k) for k in keys} if len(keys) > 1 else {}


def attributors_section(data: BatchData, out: Path) -> Section | None:
    """One dose-response curve per attributor on one plot, each on every cross-artist work it answered."""
    from orchestrator.reports.attributors import attributor_curves

    if not data.attributors:
        return None
    tag = data.batch_id[:8]
    path = attributor_curves(data.attributors, "none", data.study.level_name, out / f"attributors-{tag}.png", tag)
    note = (
        f"<p>{len(data.attributors)} attributors on the same stored works (atelier attribute): "
        f"{escape(', '.join(data.attributors))}. Every cross-artist work each answered, whatever it makes of the "
        "controls; `atelier results dose-response BATCH --compare A,B` gives each d50 and their ratio on the works "
        "both keep.</p>"
    )
    return Section("Every attributor on the same works", note + page.plot_images([path] if path else []))


def html_rows(table_id: str, head_rows: tuple[list[str], list[list]]) -> str:
    head, rows = head_rows
    return page.html_table(table_id, head, rows)


def study_sections(data: BatchData, pictures: list[Path], curves: Path | None) -> list[Section]:
    """The attribution table, the contrasts, the baselines and the d50 table, each with its method."""
    study = data.study
    notes = (analysis.METHOD, view.MARK_NOTE, view.FAMILY_NOTE, view.control_note(study))
    method = "".join(f"<p>{escape(n)}</p>" for n in notes if n)
    return [
        Section(
            "Whom the classifier names, by dose", html_rows("attribution", view.rate_rows(study)) + method, data.queries
        ),
        Section("Contrasts on the same pairs", html_rows("contrasts", view.contrast_rows(study)) + method),
        Section("Baselines", html_rows("baselines", view.baseline_rows(study))),
        Section(
            "The dose at which the style artist takes over (d50), per style artist",
            html_rows("d50", view.d50_rows(data.fits, study.level_name, view.tested_levels(study.records)))
            + f"<p>{escape(analysis.FIT_METHOD)}</p><p>{escape(view.D50_FAMILY_NOTE)}</p>"
            + page.plot_images([curves] if curves else []),
        ),
        Section("Dose-response, heatmaps and contact sheet", page.plot_images(pictures)),
    ]


def map_section(data: BatchData, out: Path) -> Section:
    """Where the stylized works fall in the classifier's feature space, drawn over its test images."""
    from orchestrator.reports import plots  # matplotlib: only when a report is written

    title = "Where the stylized works fall in the classifier's feature space"
    if data.inspection is None:
        return Section(title, page.not_computed(data.no_map))
    m, tag = data.inspection.map, data.batch_id[:8]
    how = page.map_method(m)
    picture = plots.style_map(
        m.get("points", []),
        data.classes,
        out / f"map-{tag}.png",
        f"batch {tag}: run {data.run_id}'s {m.get('layer', 'features')}\n({how})",
    )
    if picture is None:
        return Section(title, page.not_computed("the map holds no points"))
    stylized = len({p.get("stylization_id") for p in m.get("points", []) if p["kind"] == "stylized"})
    note = (
        f"<p>The test images' features in two dimensions ({escape(how)}), coloured by artist; the "
        f"{stylized} stylizations of a few sampled content images are placed into the same map without moving "
        "it. From each content image (star) an arrow runs through its stylizations by one style artist in order "
        "of rising β, coloured by that style artist.</p>"
    )
    return Section(title, note + page.plot_images([picture]))


def work_figure(r: dict, controls: dict[int, str], artifacts: Path, out: Path) -> str:
    """A stylized work beside its content and style images as the classifier saw them (their controls)."""
    pictures = [controls.get(r["content_image_id"]), controls.get(r["style_image_id"]), r["image_path"]]
    images = [
        (page.artifact_thumbnail(artifacts, p, out), alt)
        for p, alt in zip(pictures, ("content", "style", "stylized"))
        if p
    ]
    caption = (
        f"{r['content_artist']} (content) × {r['style_artist']} (style), "
        f"{analysis.LEVEL_NAMES[r['treatment']]} = {r['level']:g}: "
        f"named {r['predicted']}"
    )
    return page.figure(images, caption)


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
        paged = page.pages_of(mine, per_outcome, pages, f"{seed}-{outcome}", "pair_hash")
        for k, shown in enumerate(paged):
            head = f"{outcome} ({len(shown)} shown of {len(mine)}, page {k + 1} of {len(paged)})"
            html = (
                f"<h3>{escape(head)}</h3>"
                + page.gallery(outcome, [work_figure(r, data.controls, artifacts, out) for r in shown])
                + pager_nav(outcome, k, len(paged))
            )
            if k == 0:
                parts.append(html)
                continue
            intro = [
                f"batch {data.batch_id}: stylized works where {OUTCOME_TEXT[outcome]}, drawn with seed {seed}; "
                "no work appears on two pages"
            ]
            text = page.page(
                f"atelier style batch {data.batch_id[:8]}: {outcome}, page {k + 1}",
                intro,
                [Section(f"Stylized works by outcome: {outcome}", html)],
            )
            (out / gallery_file(outcome, k)).write_text(text, encoding="utf-8")
    return "".join(parts)


def write(data: BatchData, artifacts: Path, out: Path, per_outcome: int, pages: int, seed: int) -> Path:
    """``out/index.html``, the gallery pages and every picture beside them."""
    from orchestrator.reports import plots  # matplotlib: only when a report is written

    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob("gallery-*-*.html"):  # a folder reused for a report with more pages than this one
        stale.unlink()
    tag = data.batch_id[:8]
    pictures = plots.attribution_plots(data.study, artifacts, data.controls, out)
    curves = plots.d50_curves(
        analysis.dose_curves(data.study.records, D50_BY, "both"),
        data.fits,
        D50_BY,
        data.study.level_name,
        out / f"dose-response-{tag}-{D50_BY}.png",
        tag,
    )
    sections = [
        *study_sections(data, pictures, curves),
        *([extra] if (extra := attributors_section(data, out)) else []),
        map_section(data, out),
        Section("Stylized works by outcome", galleries(data, artifacts, out, per_outcome, pages, seed)),
    ]
    index = out / "index.html"
    index.write_text(page.page(f"atelier style batch {tag}", data.intro, sections), encoding="utf-8")
    return index
