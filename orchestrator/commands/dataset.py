"""`atelier dataset`: register image collections and look at them."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from sqlalchemy import func, select

from core.errors import ConfigError, one_line
from corpus.ingest import FORMATS, GROUP_ATTR, Ingested, ingest, parse_split, stratified_split
from corpus.neardup import DEFAULT_BITS
from corpus.synth import write_synthetic
from db.models import Dataset, Image
from orchestrator.commands.common import console, pass_lab, print_json, table
from orchestrator.jobs.lookups import get_dataset


@click.group("dataset")
def dataset_group() -> None:
    """Register and inspect datasets."""


def register(
    lab, name: str, ingested: Ingested, fmt: str, seed: int, split: tuple[float, float, float], label: str | None
) -> tuple[Dataset, list[str]]:
    """Write the dataset and all its image rows in one transaction: all or nothing.

    Returns the dataset and each image's split (near-duplicate groups whole in one split).
    """
    labels = [im.label for im in ingested.images]
    if len(set(labels)) < 2:
        raise ConfigError(f"{ingested.root} has images of {len(set(labels))} label(s); a classifier needs at least 2")
    splits = stratified_split(labels, split, seed, [im.group for im in ingested.images])
    with lab.sessions.begin() as s:
        if s.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
            raise ConfigError(f"dataset {name!r} already exists")
        ds = Dataset(
            name=name,
            root=str(ingested.root.resolve()),
            format=fmt,
            label_column=label,
            seed=seed,
            split=list(split),
            classes=sorted(set(labels)),
        )
        s.add(ds)
        s.flush()
        s.add_all(
            Image(
                dataset_id=ds.id,
                path=im.path,
                label=im.label,
                split=sp,
                sha256=im.sha256,
                width=im.width,
                height=im.height,
                status="ok",
                attrs=im.stored_attrs(),
            )
            for im, sp in zip(ingested.images, splits)
        )
        # One row per file: a file listed twice is one image, and a repeated listing is only reported.
        ok = {im.path for im in ingested.images}
        skipped = {sk.path: sk for sk in reversed(ingested.skipped) if sk.path not in ok}
        s.add_all(
            Image(
                dataset_id=ds.id,
                path=path,
                status="skipped",
                error=sk.reason,
                attrs={} if sk.kind == "unusable" else {"skip": sk.kind},
            )
            for path, sk in skipped.items()
        )
    return ds, splits


def _ingest_with_progress(path: Path, **kwargs) -> Ingested:
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
    ) as bar:
        task = bar.add_task("indexing images", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        return ingest(path, progress=progress, **kwargs)


def _summary(ds: Dataset, ingested: Ingested) -> str:
    kinds = Counter(sk.kind for sk in ingested.skipped)
    why = ", ".join(
        f"{kinds[k]} {what}"
        for k, what in (
            ("ambiguous", "ambiguous (the same bytes under two labels: every copy skipped)"),
            ("duplicate", "duplicate (the same bytes again under one label: one copy kept)"),
        )
        if kinds[k]
    )
    return one_line(
        f"dataset {ds.name!r}: {len(ingested.images)} images, {len(ds.classes)} labels"
        + (f", {len(ingested.skipped)} skipped" if ingested.skipped else "")
        + (f" ({why})" if why else "")
    )


MIXED_SHOWN = 20  # mixed-label groups listed by `dataset add`; `dataset show --groups 0` lists them all


def _near_dup_report(ds: Dataset, ingested: Ingested, splits: list[str]) -> list[str]:
    """How many near-duplicate groups, and the groups whose members carry different labels."""
    if not ingested.near_dup_bits:
        return ["near-duplicates: not grouped (--near-dup-bits 0)"]
    groups = ingested.groups()
    if not groups:
        return [f"near-duplicates: none (perceptual hashes within {ingested.near_dup_bits} of 64 bits)"]
    split_of = {im.path: sp for im, sp in zip(ingested.images, splits)}
    mixed = [g for g in groups if len({im.label for im in g}) > 1]
    lines = [
        f"near-duplicates: {len(groups)} groups, {sum(map(len, groups))} images, each group kept in one split "
        f"(perceptual hashes within {ingested.near_dup_bits} of 64 bits; listed by `atelier dataset show {ds.name}`)"
        + (f"; {len(mixed)} with mixed labels:" if mixed else "")
    ]
    lines += [
        f"  group {g[0].group} ({split_of[g[0].path]}): " + ", ".join(f"{im.path} ({im.label})" for im in g)
        for g in mixed[:MIXED_SHOWN]
    ]
    if len(mixed) > MIXED_SHOWN:
        lines.append(f"  and {len(mixed) - MIXED_SHOWN} more with mixed labels")
    return [one_line(line) for line in lines]


def _split_option(f):
    return click.option(
        "--split",
        "split_text",
        default="0.7,0.15,0.15",
        show_default=True,
        help="train,val,test fractions of a stratified split.",
    )(f)


@dataset_group.command("add")
@click.argument("name")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(FORMATS), default="imagefolder", show_default=True)
@click.option("--label", default=None, help="Column or attribute to use as the label instead of the artist.")
@click.option("--top", type=int, default=None, help="Keep the N labels with most images.")
@click.option("--min-images", type=int, default=None, help="Drop labels with fewer images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--near-dup-bits",
    type=click.IntRange(0, 32),
    default=DEFAULT_BITS,
    show_default=True,
    help="Images whose 64-bit perceptual hashes differ in at most N bits are near-duplicates and "
    "share a split; 0 turns grouping off.",
)
@_split_option
@pass_lab
def add_cmd(lab, name, path, fmt, label, top, min_images, seed, near_dup_bits, split_text) -> None:
    """Register the images under PATH (one folder per artist for imagefolder)."""
    split = parse_split(split_text)
    ingested = _ingest_with_progress(
        path, fmt=fmt, label=label, top=top, min_images=min_images, near_dup_bits=near_dup_bits
    )
    ds, splits = register(lab, name, ingested, fmt, seed, split, label)
    click.echo(_summary(ds, ingested))
    for line in _near_dup_report(ds, ingested, splits):
        click.echo(line)
    for sk in ingested.skipped:
        click.echo(one_line(f"  skipped {sk.path}: {sk.reason}"), err=True)


@dataset_group.command("synth")
@click.argument("name")
@click.option("--artists", type=click.IntRange(2, 1000), default=6, show_default=True)
@click.option("--per-artist", type=click.IntRange(1, 100_000), default=40, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--size", type=click.IntRange(16, 4096), default=96, show_default=True, help="Long side in pixels.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Folder to write (default: under artifacts)."
)
@_split_option
@pass_lab
def synth_cmd(lab, name, artists, per_artist, seed, size, out, split_text) -> None:
    """Paint a synthetic dataset (each artist its own palette and strokes) and register it."""
    split = parse_split(split_text)
    with lab.sessions() as s:
        if s.scalar(select(Dataset.id).where(Dataset.name == name)) is not None:
            raise ConfigError(f"dataset {name!r} already exists")
    out = out or lab.settings.artifacts / "datasets" / name
    if out.exists() and any(out.iterdir()):
        raise ConfigError(f"{out} is not empty; choose another --out")
    write_synthetic(out, artists, per_artist, seed=seed, size=size)
    ingested = _ingest_with_progress(out)
    ds, _ = register(lab, name, ingested, "synthetic", seed, split, None)
    click.echo(f"{_summary(ds, ingested)} written to {out}")


@dataset_group.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_lab
def list_cmd(lab, as_json) -> None:
    """Datasets with their image and label counts."""
    with lab.sessions() as s:
        counts = dict(
            s.execute(
                select(Image.dataset_id, func.count()).where(Image.status == "ok").group_by(Image.dataset_id)
            ).all()
        )
        skipped = dict(
            s.execute(
                select(Image.dataset_id, func.count()).where(Image.status == "skipped").group_by(Image.dataset_id)
            ).all()
        )
        rows = [
            (d.name, d.format, len(d.classes), counts.get(d.id, 0), skipped.get(d.id, 0), d.root)
            for d in s.scalars(select(Dataset).order_by(Dataset.name))
        ]
    if as_json:
        print_json([dict(zip(("name", "format", "labels", "images", "skipped", "root"), r)) for r in rows])
        return
    console.print(table(None, ("name", "format", "labels", "images", "skipped", "root"), rows))


@dataset_group.command("show")
@click.argument("name")
@click.option(
    "--groups",
    "n_groups",
    type=click.IntRange(0),
    default=10,
    show_default=True,
    help="How many near-duplicate groups to list (0: all).",
)
@pass_lab
def show_cmd(lab, name, n_groups) -> None:
    """Images per label and split, near-duplicate groups, and the files that were skipped."""
    with lab.sessions() as s:
        ds = get_dataset(s, name)
        rows = s.execute(
            select(Image.label, Image.split, func.count())
            .where(Image.dataset_id == ds.id, Image.status == "ok")
            .group_by(Image.label, Image.split)
        ).all()
        group = Image.attrs[GROUP_ATTR].as_integer()
        grouped = s.execute(
            select(group, Image.path, Image.label, Image.split)
            .where(Image.dataset_id == ds.id, Image.status == "ok", group.is_not(None))
            .order_by(group, Image.path)
        ).all()
        skipped = s.execute(
            select(Image.path, Image.error, Image.attrs)
            .where(Image.dataset_id == ds.id, Image.status == "skipped")
            .order_by(Image.path)
        ).all()
    per: dict[str, Counter] = {}
    for label, split, n in rows:
        per.setdefault(label, Counter())[split] += n
    console.print(f"[bold]{ds.name}[/] ({ds.format}) at {ds.root}, split {ds.split}, seed {ds.seed}")
    console.print(
        table(
            None,
            ("label", "train", "val", "test", "total"),
            [(lbl, c["train"], c["val"], c["test"], sum(c.values())) for lbl, c in sorted(per.items())],
        )
    )
    print_groups(grouped, n_groups)
    if skipped:
        kinds = Counter((attrs or {}).get("skip", "unusable") for _, _, attrs in skipped)
        why = ", ".join(f"{kinds[k]} {k}" for k in ("ambiguous", "duplicate") if kinds[k])
        console.print(
            table(
                f"{len(skipped)} skipped files" + (f" ({why})" if why else ""),
                ("path", "reason"),
                [(path, error) for path, error, _ in skipped],
            )
        )


def print_groups(grouped: list, n_groups: int | None) -> None:
    """The near-duplicate groups (each kept in one split), those mixing labels first."""
    groups: dict[int, list] = {}
    for g, path, label, split in grouped:
        groups.setdefault(g, []).append((path, label, split))
    if groups:

        def is_mixed(members) -> bool:
            return len({label for _, label, _ in members}) > 1

        # Groups mixing labels first: those are the ones to look at.
        shown = sorted(groups.items(), key=lambda item: (not is_mixed(item[1]), item[0]))[: n_groups or None]
        mixed = sum(map(is_mixed, groups.values()))
        title = (
            f"{len(groups)} near-duplicate groups, {len(grouped)} images, each in one split"
            + (f"; {mixed} with mixed labels" if mixed else "")
            + (f"; {len(shown)} shown (--groups)" if len(shown) < len(groups) else "")
        )
        console.print(
            title, markup=False, highlight=False
        )  # a line of its own: a table title wraps to the table's width
        console.print(
            table(
                None,
                ("group", "split", "labels", "images"),
                [
                    (
                        g,
                        ", ".join(sorted({split or "-" for _, _, split in members})),
                        ", ".join(sorted({label for _, label, _ in members})),
                        ", ".join(path for path, _, _ in members),
                    )
                    for g, members in shown
                ],
            )
        )


COMMANDS = [dataset_group]
