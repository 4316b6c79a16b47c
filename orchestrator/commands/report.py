"""`atelier report BATCH`: a style batch's study as one HTML page (see orchestrator/report.py)."""

from __future__ import annotations

from pathlib import Path

import click
from sqlalchemy import text

from db.models import Dataset, Run
from orchestrator.attribution import CONDITION_TEXT, chance_text, counts_sql, pairs_sql, strata
from orchestrator.commands.attribution import (
    METHOD,
    batch_totals,
    control_paths,
    describe_batch,
    find_batch,
    one_snapshot,
    read_counts,
)
from orchestrator.commands.common import pass_lab
from orchestrator.stats import chance_levels


@click.command("report")
@click.argument("batch_ref")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=None, help="[report-BATCH8]")
@click.option("--per-outcome", type=click.IntRange(0, 500), default=12, show_default=True,
              help="Stylized works shown per outcome (content / style / other), sampled with --seed.")  # fmt: skip
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap and gallery seed.")
@pass_lab
def report_cmd(lab, batch_ref, out, per_outcome, seed) -> None:
    """Write a style batch's report: attribution table by dose with intervals and chance, the dose-response
    plot, the content x style heatmaps, a contact sheet, and the stylized works grouped by outcome."""
    from orchestrator import plots, report  # matplotlib and PIL: only when a report is written

    with lab.sessions() as s:
        one_snapshot(s)
        batch = find_batch(s, batch_ref)
        run, ds = s.get(Run, batch.classifier_run_id), s.get(Dataset, batch.dataset_id)
        rows = [dict(r) for r in s.execute(text(pairs_sql("both")), {"batch": batch.id}).mappings()]
        counts = read_counts(s, batch.id, "both", "style-weight")
        totals = batch_totals(s, batch.id)
        controls = control_paths(s, run.id, batch.spec["style"]["size"])
    out = out or Path(f"report-{batch.id[:8]}")
    out.mkdir(parents=True, exist_ok=True)
    k = len(ds.classes)
    result = strata(counts, rows, "style-weight", 2000, seed)
    chance = chance_levels(k)
    pictures = plots.attribution_plots(rows, result, chance, lab.settings.artifacts, controls, out, batch.id[:8])
    quoted = repr(batch.id)
    sections = [
        report.Section(
            "Whom the classifier names, by dose",
            report.strata_table(result)
            + f"<p>{report.escape(chance_text(k))}</p><p>{report.escape(METHOD.format(resamples=2000, seed=seed))}</p>",
            [counts_sql("both", "style-weight").replace(":batch", quoted), pairs_sql("both").replace(":batch", quoted)],
        ),
        report.Section("Dose-response, heatmaps and contact sheet", report.plot_images(pictures)),
        report.Section(
            "Stylized works by outcome",
            report.gallery(report.sample_by_outcome(rows, per_outcome, seed), controls, lab.settings.artifacts, out),
        ),
    ]
    intro = [
        f"batch {batch.id} on {ds.name}: {totals['asked']} stylizations asked, {totals['cross']} cross-artist "
        f"done, {totals['same']} same-artist (their own outcome, never pooled)",
        *describe_batch(batch, run, k),
        f"kept {len(rows)} of {totals['cross']} cross-artist stylizations: {CONDITION_TEXT['both']}",
    ]
    index = out / "index.html"
    index.write_text(report.page(f"atelier style batch {batch.id[:8]}", intro, sections), encoding="utf-8")
    click.echo(f"wrote {index}")


COMMANDS = [report_cmd]
