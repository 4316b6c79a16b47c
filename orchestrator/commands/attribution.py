"""`atelier results attribution`: whom the classifier names when artist A's style is painted onto B's work."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import click
from sqlalchemy import text

from db.engine import one_snapshot
from db.models import Dataset, Run, StyleBatch
from orchestrator.attribution import (
    CONDITION_TEXT,
    CONDITIONS,
    GROUPS,
    Stratum,
    chance_text,
    counts_sql,
    pairs_sql,
    strata,
)
from orchestrator.batches import (
    METHOD,
    batch_totals,
    control_paths,
    describe_batch,
    find_batch,
    read_counts,
)
from orchestrator.commands.common import console, pass_lab, print_json, table
from orchestrator.stats import OUTCOMES, chance_levels

KEY_COLUMNS = {"style_weight": "β", "style_artist": "style artist", "content_artist": "content artist"}


@click.command("attribution")
@click.argument("batch_ref")
@click.option(
    "--by",
    "by",
    type=click.Choice(tuple(GROUPS)),
    default="style-weight",
    show_default=True,
    help="Rows per dose, or per dose and artist pair / style artist / content artist.",
)
@click.option(
    "--condition",
    type=click.Choice(tuple(CONDITIONS)),
    default="both",
    show_default=True,
    help="Which unstylized images (matched controls) the classifier must recognise for a pair to count.",
)
@click.option("--resamples", type=click.IntRange(100), default=2000, show_default=True, help="Bootstrap resamples.")
@click.option("--seed", type=int, default=0, show_default=True, help="Bootstrap seed.")
@click.option(
    "--plot",
    "plot_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Write the dose-response curve, per-dose heatmaps and a contact sheet as PNG here.",
)
@click.option("--format", "fmt", type=click.Choice(("table", "csv", "json")), default="table", show_default=True)
@pass_lab
def attribution_cmd(lab, batch_ref, by, condition, resamples, seed, plot_dir, fmt) -> None:
    """Content / style / other per dose, with cluster-bootstrap and Wilson 95 % intervals and chance levels."""
    with lab.sessions() as s:
        one_snapshot(s)  # the counts and the rows they are drawn from: the same data
        batch = find_batch(s, batch_ref)
        run, ds = s.get(Run, batch.classifier_run_id), s.get(Dataset, batch.dataset_id)
        rows = [dict(r) for r in s.execute(text(pairs_sql(condition)), {"batch": batch.id}).mappings()]
        counts = read_counts(s, batch.id, condition, by)
        totals = batch_totals(s, batch.id)
        plotting = plot_dir is not None and fmt == "table"
        dose_counts = (
            read_counts(s, batch.id, condition, "style-weight") if plotting and by != "style-weight" else counts
        )
        controls = control_paths(s, run.id, batch.spec["style"]["size"]) if plotting else {}
    k = len(ds.classes)
    result = strata(counts, rows, by, resamples, seed)
    if fmt == "json":
        print_json(json_rows(result, by, condition, resamples, seed, k))
    elif fmt == "csv":
        write_csv(result, by, k)
    else:
        print_table(result, batch, run, ds, by, condition, resamples, seed, len(rows), totals)
    if plotting:
        from orchestrator import plots  # matplotlib costs half a second of start-up: only when plotting

        plot_dir.mkdir(parents=True, exist_ok=True)
        doses = strata(dose_counts, rows, "style-weight", resamples, seed) if by != "style-weight" else result
        for path in plots.attribution_plots(
            rows, doses, chance_levels(k), lab.settings.artifacts, controls, plot_dir, batch.id[:8]
        ):
            click.echo(f"wrote {path}")


def json_rows(result: list[Stratum], by: str, condition: str, resamples: int, seed: int, k: int) -> list[dict]:
    chance = chance_levels(k)
    return [
        {
            **dict(zip(GROUPS[by], r.key)),
            "stylizations": r.n,
            "pairs": r.pairs,
            "content_images": r.content_images,
            "style_images": r.style_images,
            "median_loss_ratio": r.median_loss_ratio,
            **{
                o: {
                    "count": r.counts[o],
                    "rate": r.rate(o),
                    "bootstrap_95": list(r.bootstrap[o]),
                    "wilson_95": list(r.wilson[o]),
                    "chance": chance[o],
                }
                for o in OUTCOMES
            },
            "condition": condition,
            "resamples": resamples,
            "seed": seed,
        }
        for r in result
    ]


def write_csv(result: list[Stratum], by: str, k: int) -> None:
    chance = chance_levels(k)
    w = csv.writer(sys.stdout)
    w.writerow(
        [
            *GROUPS[by],
            "stylizations",
            "pairs",
            "content_images",
            "style_images",
            "median_loss_ratio",
            *(
                f"{o}_{x}"
                for o in OUTCOMES
                for x in ("count", "rate", "boot_lo", "boot_hi", "wilson_lo", "wilson_hi", "chance")
            ),
        ]
    )
    for r in result:
        w.writerow(
            [
                *r.key,
                r.n,
                r.pairs,
                r.content_images,
                r.style_images,
                r.median_loss_ratio,
                *(x for o in OUTCOMES for x in (r.counts[o], r.rate(o), *r.bootstrap[o], *r.wilson[o], chance[o])),
            ]
        )


def print_table(
    result: list[Stratum],
    batch: StyleBatch,
    run: Run,
    ds: Dataset,
    by: str,
    condition: str,
    resamples: int,
    seed: int,
    kept: int,
    totals: dict[str, int],
) -> None:
    k = len(ds.classes)
    console.print(
        f"[bold]batch {batch.id}[/] on {ds.name}: {totals['asked']} stylizations asked, {totals['cross']} "
        f"cross-artist done, {totals['same']} same-artist (their own outcome, never pooled)",
        highlight=False,
    )
    for line in describe_batch(batch, run, k):
        console.print(line, highlight=False, style="yellow" if line.startswith("warning") else None)
    console.print(
        f"kept {kept} of {totals['cross']} cross-artist stylizations: {CONDITION_TEXT[condition]}", highlight=False
    )
    columns = (
        *(KEY_COLUMNS[c] for c in GROUPS[by]),
        "n",
        "pairs",
        "content imgs",
        "style imgs",
        *(f"{o}: rate, bootstrap, Wilson" for o in OUTCOMES),
        "β·style/α·content",
    )
    console.print(
        table(
            f"whom the classifier names, by {by}",
            columns,
            [
                (
                    *(f"{v:g}" if isinstance(v, float) else v for v in r.key),
                    r.n,
                    r.pairs,
                    r.content_images,
                    r.style_images,
                    *(
                        f"{r.rate(o):.2f} ({r.bootstrap[o][0]:.2f}-{r.bootstrap[o][1]:.2f}; W {r.wilson[o][0]:.2f}-{r.wilson[o][1]:.2f})"
                        for o in OUTCOMES
                    ),
                    "" if r.median_loss_ratio is None else f"{r.median_loss_ratio:.3g}",
                )
                for r in result
            ],
        )
    )
    console.print(chance_text(k), highlight=False)
    console.print(METHOD.format(resamples=resamples, seed=seed), highlight=False)
    quoted = repr(batch.id)
    console.print(f'rows: atelier query "{pairs_sql(condition).replace(":batch", quoted)}"', highlight=False)
    console.print(f'counts: atelier query "{counts_sql(condition, by).replace(":batch", quoted)}"', highlight=False)
