"""A run's report: its configuration, per-epoch curves, the test confusion matrix with per-class precision,
recall and F1, its most confident mistakes, a t-SNE of the test split's bottleneck features and activation maps.

Reading (``collect``) and writing (``write``) are apart: every query and the inspect job run before the output
folder exists, so a bad reference or a failed job leaves nothing behind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from core import weights as names
from core.artifacts import artifact_path
from core.errors import ConfigError
from orchestrator.reports import page
from orchestrator.reports.page import Section, escape

RUN_SQL = (
    "SELECT r.id, r.arch, r.config, r.weights, r.weights_sha256, r.best_epoch, r.best_val_top1, r.best_val_top2, "
    "r.best_val_macro_f1, r.test_top1, r.test_top2, r.test_macro_f1, r.dataset_id, d.name AS dataset, d.root, "
    "d.classes, j.status FROM runs r JOIN datasets d ON d.id = r.dataset_id JOIN jobs j ON j.id = r.job_id "
    "WHERE r.id = :run"
)
SPLITS_SQL = (
    "SELECT split, count(*) AS images FROM images WHERE dataset_id = (SELECT dataset_id FROM runs WHERE id = :run) "
    "AND status = 'ok' AND split IS NOT NULL GROUP BY split ORDER BY split"
)
EPOCHS_SQL = (
    "SELECT epoch, phase, stage, loss, top1, top2, macro_f1, lr FROM epoch_metrics WHERE run_id = :run "
    "ORDER BY epoch, phase"
)
CONFUSION_SQL = "SELECT test_confusion FROM runs WHERE id = :run"
# Every wrong test prediction; the page orders them by the named class's probability (top3[0][1]) in Python,
# since SQLite and PostgreSQL spell a JSON element differently.
MISTAKES_SQL = (
    "SELECT p.image_id, p.label, p.predicted, p.top3, i.path FROM predictions p JOIN images i ON i.id = p.image_id "
    "WHERE p.run_id = :run AND NOT p.correct ORDER BY p.image_id"
)
MISTAKES = 24  # the gallery's size: the most confident ones


@dataclass
class RunData:
    run: dict
    classes: list[str]
    splits: dict[str, int]
    epochs: list[dict]
    confusion: list[list[int]] | None
    mistakes: list[dict]
    queries: dict[str, str]
    inspection: page.Inspection | None = None
    no_map: str = page.NO_MAP  # why there is no inspection, when there is none

    def inspectable(self) -> bool:
        """Only a finished run has the checkpoint the inspect job reads."""
        if self.run["status"] != "succeeded":
            self.no_map = f"run {self.run['id']} is {self.run['status']}, not finished"
            return False
        return True


def collect(session, run_id: int) -> RunData:
    """Everything the page shows, read with the queries it prints."""
    found, q_run = page.fetch(session, RUN_SQL, run=run_id)
    if not found:
        raise ConfigError(f"no run {run_id}")
    run = found[0]
    run["config"], run["classes"] = page.json_value(run["config"]) or {}, page.json_value(run["classes"])
    splits, q_splits = page.fetch(session, SPLITS_SQL, run=run_id)
    epochs, q_epochs = page.fetch(session, EPOCHS_SQL, run=run_id)
    confusion, q_confusion = page.fetch(session, CONFUSION_SQL, run=run_id)
    wrong, q_mistakes = page.fetch(session, MISTAKES_SQL, run=run_id)
    for w in wrong:
        w["top3"] = page.json_value(w["top3"]) or []
    return RunData(
        run=run,
        classes=list(run["classes"]),
        splits={s["split"]: s["images"] for s in splits},
        epochs=epochs,
        confusion=page.json_value(confusion[0]["test_confusion"]),
        mistakes=most_confident(wrong, MISTAKES),
        queries={
            "run": q_run,
            "splits": q_splits,
            "epochs": q_epochs,
            "confusion": q_confusion,
            "mistakes": q_mistakes,
        },
    )


def most_confident(wrong: list[dict], n: int) -> list[dict]:
    """The ``n`` wrong predictions the classifier was surest of (the named class's probability, then image id)."""
    return sorted(wrong, key=lambda w: (-(w["top3"][0][1] if w["top3"] else 0.0), w["image_id"]))[:n]


def config_rows(data: RunData) -> list[tuple[str, object]]:
    """What produced the run: dataset, weights with their full sha256, seed, split sizes, then every option."""
    r, cfg = data.run, data.run["config"]
    rows: list[tuple[str, object]] = [
        ("dataset", r["dataset"]),
        ("arch", r["arch"]),
        ("weights", names.started_from(r["weights"], cfg)),
        ("weights sha256", r["weights_sha256"] or "– (random init)"),
        ("seed", cfg.get("seed")),
        *((f"{split} images", data.splits.get(split, 0)) for split in ("train", "val", "test")),
        ("job status", r["status"]),
    ]
    shown = {"arch", "weights", "seed"}
    rows += [(k, setting(v)) for k, v in sorted(cfg.items()) if k not in shown]
    return rows


def setting(value: object) -> object:
    """A configuration value as it was given: 1e-05 stays 1e-05, not a rounded 0.000."""
    if isinstance(value, float):
        return f"{value:g}"
    return value if isinstance(value, int | str) else json.dumps(value)


def intro(data: RunData) -> list[str]:
    r = data.run
    lines = [
        f"run {r['id']}: {r['arch']} on {r['dataset']} ({len(data.classes)} artists), "
        f"weights {names.describe(names.started_from(r['weights'], r['config']), r['weights_sha256'])}",
        "every number below comes from the store (runs, epoch_metrics, predictions); the queries are under each table",
    ]
    if names.warns_random(r["arch"], names.started_from(r["weights"], r["config"])):
        lines.append(names.random_warning(f"run {r['id']}", r["arch"]))
    return lines


def sections(data: RunData, artifacts: Path, out: Path) -> list[Section]:
    from orchestrator.reports import plots  # matplotlib: only when a report is written

    r, q = data.run, data.queries
    test = [
        (
            r["best_epoch"],
            r["best_val_top1"],
            r["best_val_macro_f1"],
            r["test_top1"],
            r["test_top2"],
            r["test_macro_f1"],
        )
    ]
    curves = plots.training_curves(data.epochs, out / f"run-{r['id']}-curves.png", f"run {r['id']}: per epoch")
    epochs = page.html_table(
        "epochs",
        ("epoch", "phase", "stage", "loss", "top-1", "top-2", "macro-F1", "lr"),
        [
            tuple(e[c] for c in ("epoch", "phase", "stage", "loss", "top1", "top2", "macro_f1", "lr"))
            for e in data.epochs
        ],
    )
    return [
        Section(
            "Configuration",
            page.html_table("config", ("option", "value"), config_rows(data)),
            [q["run"], q["splits"]],
        ),
        Section(
            "Test results (best checkpoint)",
            page.html_table(
                "test", ("best epoch", "val top-1", "val macro-F1", "test top-1", "test top-2", "test macro-F1"), test
            ),
            [q["run"]],
        ),
        Section(
            "Per epoch: loss and top-1, train and validation",
            page.plot_images([curves]) + f"<details><summary>the numbers</summary>{epochs}</details>",
            [q["epochs"]],
        ),
        confusion_section(data, out),
        mistakes_section(data, artifacts, out),
        *inspection_sections(data, artifacts, out),
    ]


def confusion_section(data: RunData, out: Path) -> Section:
    """The confusion matrix normalised per row, and precision, recall and F1 per artist computed from it."""
    from orchestrator.reports import plots
    from orchestrator.reports.confusion import per_class_scores

    run_id = data.run["id"]
    if not data.confusion:
        return Section("Test confusion and per-artist scores", page.not_computed("the run has no test pass yet"))
    picture = plots.confusion_normalised(
        data.confusion, data.classes, out / f"run-{run_id}-confusion.png", f"run {run_id}: test confusion, per row"
    )
    rows = [
        (artist, s.support, s.predicted, s.correct, s.precision, s.recall, s.f1)
        for artist, s in zip(data.classes, per_class_scores(data.confusion))
    ]
    table = page.html_table(
        "per-class", ("artist", "test images", "named so", "correct", "precision", "recall", "F1"), rows
    )
    note = (
        "<p>Rows of the figure: the true artist; each row sums to 1. Precision, recall and F1 are computed from "
        "the stored matrix (a ratio with nothing to divide by counts as 0).</p>"
    )
    return Section(
        "Test confusion and per-artist scores",
        page.plot_images([picture]) + note + table,
        [data.queries["confusion"]],
    )


def mistakes_section(data: RunData, artifacts: Path, out: Path) -> Section:
    """The test images the classifier named wrongly with the most confidence, as thumbnails."""
    root, dataset_id = Path(data.run["root"]), data.run["dataset_id"]
    figures = []
    for m in data.mistakes:
        try:
            source = artifact_path(root, m["path"])  # stays under the dataset root, whatever the row says
        except ConfigError:
            source = root / "missing"
        thumb = page.copy_thumbnail(artifacts, source, f"dataset-images/{dataset_id}/{m['path']}", out)
        others = "; ".join(f"{label} {p:.2f}" for label, p in m["top3"][1:])
        caption = f"true {m['label']}, named {m['predicted']} (p = {m['top3'][0][1]:.2f})" + (
            f"; then {others}" if others else ""
        )
        figures.append(page.figure([(thumb, m["path"])], caption))
    html = (
        f"<p>The {len(data.mistakes)} wrong test predictions with the highest probability of the named artist, "
        f"surest first (at most {MISTAKES}).</p>" + page.gallery("mistakes", figures)
    )
    return Section("Most confident mistakes", html, [data.queries["mistakes"]])


def inspection_sections(data: RunData, artifacts: Path, out: Path) -> list[Section]:
    """The t-SNE of the test split and the activation maps, from the inspect job (or why they are missing)."""
    from orchestrator.reports import plots

    tsne, maps = "The test split in the classifier's feature space", "Activation maps"
    found = data.inspection
    if found is None:
        return [Section(tsne, page.not_computed(data.no_map)), Section(maps, page.not_computed(data.no_map))]
    m, run_id = found.map, data.run["id"]
    how = page.map_method(m)
    picture = plots.tsne_scatter(
        m.get("points", []),
        data.classes,
        out / f"run-{run_id}-tsne.png",
        f"run {run_id}: test images by their {m.get('layer', 'bottleneck features')}\n({how})",
    )
    if picture is None:
        return [
            Section(tsne, page.not_computed("the map holds no test images")),
            Section(maps, activations_html(found, data.classes, artifacts, out)),
        ]
    note = f"<p>Each test image's bottleneck features ({escape(str(m.get('layer')))}) in two dimensions ({escape(how)}), coloured by its artist.</p>"
    return [
        Section(tsne, note + page.plot_images([picture])),
        Section(maps, activations_html(found, data.classes, artifacts, out)),
    ]


def activations_html(found: page.Inspection, classes: list[str], artifacts: Path, out: Path) -> str:
    """Per artist, each inspected test image with its maps (mean activation per block, Grad-CAM), copied beside
    the page from the inspect job's folder."""
    parts = []
    for artist in classes:
        figures = []
        for a in (a for a in found.activations if a["label"] == artist):
            pictures = []
            for m in a["maps"]:
                name = f"inspect/{Path(m['file']).name}"  # unique within the one inspect folder a page reads
                pictures.append((page.copy_artifact(artifacts, f"{found.output}/{m['file']}", out, name), m["what"]))
            caption = f"image {a['image_id']}: {a['label']}, named {a['predicted']} — " + ", ".join(
                m["what"] for m in a["maps"]
            )
            figures.append(page.figure(pictures, caption))
        if figures:
            parts.append(f"<h3>{escape(artist)}</h3>" + page.gallery(f"activations-{classes.index(artist)}", figures))
    return "".join(parts) or page.not_computed("the inspect job kept no activation maps")


def write(data: RunData, artifacts: Path, out: Path, nav: str = "") -> Path:
    """``out/index.html`` and its pictures; ``nav``: links above the page (a sweep's report links back)."""
    out.mkdir(parents=True, exist_ok=True)
    title = f"atelier run {data.run['id']}"
    index = out / "index.html"
    index.write_text(page.page(title, intro(data), sections(data, artifacts, out), nav), encoding="utf-8")
    return index
