"""PNG figures for results and reports (matplotlib, no display): curves, confusions, heatmaps, maps."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from core.artifacts import artifact_path  # noqa: E402
from core.errors import ConfigError  # noqa: E402


def training_curves(epochs: list[dict], path: Path, title: str) -> Path:
    """``epochs``: rows with epoch, phase (train|val), loss, top1, macro_f1."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, metric in zip(axes, ("loss", "top1", "macro_f1")):
        for phase, style in (("train", "--"), ("val", "-")):
            rows = [r for r in epochs if r["phase"] == phase]
            ax.plot([r["epoch"] for r in rows], [r[metric] for r in rows], style, marker="o", ms=3, label=phase)
        ax.set_xlabel("epoch")
        ax.set_title(metric)
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def confusion_matrix(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    m = np.asarray(matrix)
    size = max(4.0, 0.55 * len(classes) + 2)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(m, cmap="Blues")
    ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right")
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    for (i, j), v in np.ndenumerate(m):
        ax.text(j, i, str(v), ha="center", va="center", color="white" if v > m.max() / 2 else "black", fontsize=8)
    fig.colorbar(im, ax=ax, fraction=0.046)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def grid_heatmap(cells: list[tuple[dict, float | None]], x: str, y: str, path: Path, title: str) -> Path:
    """Best value per (y, x) over the other axes; empty squares are cells without a result."""
    from core.errors import ConfigError

    if not cells or any(x not in c or y not in c for c, _ in cells):
        axes = sorted(cells[0][0]) if cells else []
        raise ConfigError(f"--x {x} / --y {y} must be axes of the sweep (it has: {', '.join(axes)})")
    xs = sorted({c[x] for c, _ in cells}, key=str)
    ys = sorted({c[y] for c, _ in cells}, key=str)
    m = np.full((len(ys), len(xs)), np.nan)
    for c, v in cells:
        i, j = ys.index(c[y]), xs.index(c[x])
        if v is not None and not (m[i, j] >= v):
            m[i, j] = v
    fig, ax = plt.subplots(figsize=(max(4, 0.7 * len(xs) + 2), max(3, 0.5 * len(ys) + 1.5)))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs])
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    for (i, j), v in np.ndenumerate(m):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", color="white", fontsize=7)
    fig.colorbar(im, ax=ax)
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _dose_axis(ax, doses: list[float]) -> None:
    """A log axis that still shows the null dose: linear below the smallest positive beta."""
    positive = [d for d in doses if d > 0]
    ax.set_xscale("symlog", linthresh=min(positive) if positive else 1.0)
    ax.set_xlim(min(doses), max(doses) * 1.5 if positive else 1.0)  # no empty negative half
    ax.set_xticks(doses, [f"{d:g}" for d in doses])


def attribution_plots(study, artifacts: Path, controls: dict[int, str], out: Path) -> list[Path]:
    """Rates per dose with their 95 % bands over images, the control and null-dose levels and uniform chance; a
    style-attribution heatmap per dose; a contact sheet: each pair's content and style images as classified
    (controls) beside its stylizations across doses. ``study``: an analysed ``orchestrator.reports.attribution.Study``."""
    tag, rows = study.info["batch_id"][:8], study.kept_rows()
    doses = study.table if study.by == "dose" else None
    written = [
        dose_response(
            doses, len(study.info["classes"]), study.level_name, out / f"attribution-{tag}-dose-response.png", tag
        )
        if doses is not None
        else None,
        style_heatmaps(rows, study.level_name, out / f"attribution-{tag}-heatmap.png", tag),
        contact_sheet(rows, study.level_name, artifacts, controls, out / f"attribution-{tag}-contact-sheet.png", tag),
    ]
    return [p for p in written if p is not None]


OUTCOME_COLORS = (("content", "tab:blue"), ("style", "tab:red"), ("other", "tab:gray"))


def dose_response(table, k: int, level_name: str, path: Path, tag: str) -> Path | None:
    """Each outcome's rate per dose (``analysis.attribution_table``) with its 95 % band over images; dashed: the
    control arm's rate (unstylized), dotted: uniform chance 1/K."""
    arms = table[table["treatment"] != "control"]
    if arms.empty:
        return None
    control = table[table["treatment"] == "control"].iloc[0]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    levels = [float(v) for v in arms["level"]]
    for outcome, color in OUTCOME_COLORS:
        ax.plot(levels, arms[f"{outcome}_rate"], marker="o", color=color, label=outcome)
        ax.fill_between(levels, arms[f"{outcome}_low"], arms[f"{outcome}_high"], color=color, alpha=0.15)
        ax.axhline(control[f"{outcome}_rate"], color=color, linestyle="--", linewidth=1)
    ax.axhline(1 / k, color="black", linestyle=":", linewidth=1, label="uniform chance 1/K")
    _dose_axis(ax, levels)
    ax.set_ylim(0, 1)
    ax.set_xlabel(f"{level_name} (α fixed)" if level_name == "β" else f"{level_name} (scale-free)")
    ax.set_ylabel("share of stylizations (95 %, jackknife over images)")
    ax.legend(title="classifier names", fontsize=8)
    ax.set_title(f"batch {tag}: dose-response (dashed: controls, unstylized)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def d50_curves(curves, fits, by: str, level_name: str, path: Path, tag: str) -> Path | None:
    """Per outcome ('named', 'probs') a panel: each group's fitted curve in log dose with its band (none where the
    group has too few images), its observed means per dose, and its d50 (the dose where the curve crosses ½)."""
    if curves.empty:
        return None
    keys = [k for k in ("style_artist", "content_artist") if k in curves.columns]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), squeeze=False)
    groups = sorted({tuple(r[k] for k in keys) for r in curves.to_dict("records")})
    colors = _artist_colors([" × ".join(g) or "all" for g in groups])
    titles = {"named": "P(style artist | one of the two named)", "probs": "p_style / (p_style + p_content)"}
    for ax, outcome in zip(axes[0], ("named", "probs")):
        mine = curves[curves["outcome"] == outcome]
        for g in groups:
            part = mine
            for k, v in zip(keys, g):
                part = part[part[k] == v]
            name, color = " × ".join(g) or "all", colors[" × ".join(g) or "all"]
            line, dots = part[~part["observed"].astype(bool)], part[part["observed"].astype(bool)]
            if not line.empty:
                ax.plot(line["level"], line["fit"], color=color, label=name)
                if line["low"].notna().any():
                    ax.fill_between(line["level"], line["low"], line["high"], color=color, alpha=0.12)
            ax.scatter(dots["level"], dots["fit"], color=color, s=12)
        ax.axhline(0.5, color="black", linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel(f"{level_name} (log scale; > 0)")
        ax.set_title(titles[outcome], fontsize=9)
    _legend_outside(axes[0][1], len(groups), title=by)
    fig.suptitle(f"batch {tag}: where the style artist overtakes the content artist (dotted: ½, d50)", fontsize=9)
    return _save(fig, path)


def style_heatmaps(rows: list[dict], level_name: str, path: Path, tag: str) -> Path | None:
    """Per dose, the share of each (style artist, content artist) cell's stylizations named the style artist."""
    if not rows:
        return None
    styles = sorted({r["style_artist"] for r in rows})
    contents = sorted({r["content_artist"] for r in rows})
    betas = sorted({r["level"] for r in rows})
    fig, axes = plt.subplots(
        1, len(betas), figsize=(0.6 * len(contents) * len(betas) + 3, 0.45 * len(styles) + 2.5), squeeze=False
    )
    for ax, beta in zip(axes[0], betas):
        m = np.full((len(styles), len(contents)), np.nan)
        for i, s in enumerate(styles):
            for j, c in enumerate(contents):
                cell = [r for r in rows if r["style_artist"] == s and r["content_artist"] == c and r["level"] == beta]
                if cell:
                    m[i, j] = sum(r["outcome"] == "style" for r in cell) / len(cell)
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(len(contents)), contents, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(styles)), styles if ax is axes[0][0] else [], fontsize=7)
        ax.set_xlabel("content artist")
        ax.set_title(f"{level_name} = {beta:g}", fontsize=9)
    axes[0][0].set_ylabel("style artist")
    fig.colorbar(im, ax=list(axes[0]), label="named the style artist")
    fig.suptitle(f"batch {tag}: style attribution per dose (same-artist cells are not analysed)", fontsize=9)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def contact_sheet(
    rows: list[dict], level_name: str, artifacts: Path, controls: dict[int, str], path: Path, tag: str
) -> Path | None:
    """The first few pairs (content, style) in a stable order: both controls, then the pair at every dose."""
    from PIL import Image

    betas = sorted({r["level"] for r in rows})
    by_pair: dict[tuple, dict[float, dict]] = {}
    for r in sorted(
        rows, key=lambda r: (r["content_artist"], r["style_artist"], r["content_image_id"], r["style_image_id"])
    ):
        by_pair.setdefault((r["content_image_id"], r["style_image_id"]), {})[r["level"]] = r
    shown = list(by_pair.items())[:6]
    if not shown:
        return None
    fig, axes = plt.subplots(
        len(shown), 2 + len(betas), figsize=(1.9 * (2 + len(betas)), 2.1 * len(shown)), squeeze=False
    )
    for ax_row, ((content_id, style_id), works) in zip(axes, shown):
        first = next(iter(works.values()))
        panels = [
            (controls.get(content_id), f"content: {first['content_artist']}"),
            (controls.get(style_id), f"style: {first['style_artist']}"),
        ]
        panels += [
            (
                works[b]["image_path"] if b in works else None,
                f"{level_name}={b:g}: {works[b]['outcome']}" if b in works else f"{level_name}={b:g}: -",
            )
            for b in betas
        ]
        for ax, (rel, title) in zip(ax_row, panels):
            if rel:
                try:
                    with Image.open(artifact_path(artifacts, rel)) as im:
                        ax.imshow(im.convert("RGB"))
                except (OSError, ConfigError):  # a file removed by hand: the panel says so, the sheet is drawn
                    title += " (file missing)"
            ax.set_title(title, fontsize=7)
            ax.axis("off")
    fig.suptitle(f"batch {tag}: unstylized (as classified) and stylized across doses", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _artist_colors(classes: list[str]) -> dict[str, tuple]:
    """A distinct colour per artist, in class order: tab20, tab20b, tab20c hold 60 (50 artists are legible)."""
    palette = [c for name in ("tab20", "tab20b", "tab20c") for c in plt.get_cmap(name).colors]
    if len(classes) <= 10:
        palette = list(plt.get_cmap("tab10").colors)
    return {c: palette[i % len(palette)] for i, c in enumerate(classes)}


def _legend_outside(ax, n: int, **kwargs) -> None:
    """A legend right of the axes, in as many columns as 50 names need to stay on the figure."""
    if ax.get_legend_handles_labels()[0]:  # nothing drawn with a label (no fitted curve): no empty legend box
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1), ncol=max(1, -(-n // 25)), fontsize=7, **kwargs)


def _save(fig, path: Path, dpi: int = 120) -> Path:
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return path


def confusion_normalised(matrix: list[list[int]], classes: list[str], path: Path, title: str) -> Path:
    """Each true class's row as shares of its test images; sized by the class count so 10 to 50 names stay
    legible (labels rotated, smaller type and no per-square numbers past 25 classes)."""
    from orchestrator.reports.confusion import row_normalised

    m, k = row_normalised(matrix), len(classes)
    side = max(5.0, 0.3 * k + 3)
    font = 9 if k <= 20 else 7 if k <= 35 else 6
    fig, ax = plt.subplots(figsize=(side + 1.2, side))
    im = ax.imshow(m, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(k), classes, rotation=90 if k > 12 else 45, ha="center" if k > 12 else "right", fontsize=font)
    ax.set_yticks(range(k), classes, fontsize=font)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    if k <= 25:
        for (i, j), v in np.ndenumerate(m):
            if v > 0:
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7, color="white" if v > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, label="share of the true class's test images")
    ax.set_title(title)
    return _save(fig, path)


def tsne_scatter(points: list[dict], classes: list[str], path: Path, title: str) -> Path | None:
    """The test images' bottleneck features in two dimensions (``kind == "test"`` points of an inspect map),
    one colour per artist."""
    test = [p for p in points if p["kind"] == "test"]
    if not test:
        return None
    colors = _artist_colors(classes)
    fig, ax = plt.subplots(figsize=(9, 7))
    for artist in classes:
        mine = [p for p in test if p["label"] == artist]
        if mine:
            ax.scatter([p["x"] for p in mine], [p["y"] for p in mine], s=14, color=colors[artist], label=artist)
    _legend_outside(ax, len(classes), title="artist")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return _save(fig, path)


def style_map(points: list[dict], classes: list[str], path: Path, title: str) -> Path | None:
    """Where stylized works fall in the classifier's feature space: the test images coloured by artist, every
    stylized work as a small dot, and from each sampled content image one chain of arrows per style image
    through its stylizations in order of β (several works of one pair at one β, e.g. seeds: their mean
    position). Arrow and dot colour: the style artist."""
    colors = _artist_colors(classes)
    anchors = {p["image_id"]: p for p in points if p["kind"] == "test"}
    anchors.update({p["image_id"]: p for p in points if p["kind"] == "content"})
    if not anchors:
        return None
    fig, ax = plt.subplots(figsize=(10, 7.5))
    for artist in classes:
        mine = [p for p in points if p["kind"] == "test" and p["label"] == artist]
        if mine:
            ax.scatter(
                [p["x"] for p in mine], [p["y"] for p in mine], s=10, alpha=0.45, color=colors[artist], label=artist
            )
    works = {p.get("stylization_id", id(p)): p for p in points if p["kind"] == "stylized"}  # each work once
    if works:
        ax.scatter([p["x"] for p in works.values()], [p["y"] for p in works.values()], s=4, alpha=0.5,
                   c=[colors.get(p["style_artist"], "black") for p in works.values()], zorder=2)  # fmt: skip
    _chain_arrows(ax, works.values(), anchors, colors)
    contents = [anchors[c] for c in sorted({p["content_image_id"] for p in works.values()}) if c in anchors]
    if contents:  # filled with the content artist's colour, so a test image under its star still shows whose it is
        ax.scatter(
            [p["x"] for p in contents],
            [p["y"] for p in contents],
            s=130,
            marker="*",
            c=[colors.get(p["label"], "white") for p in contents],
            edgecolors="black",
            linewidths=0.8,
            zorder=4,
            label="content image (arrows: β rising, coloured by style artist)",
        )
    _legend_outside(ax, len(classes) + 1)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    return _save(fig, path)


def _chain_arrows(ax, works, anchors: dict, colors: dict) -> None:
    """One quiver for every arrow: thousands of per-arrow annotations took matplotlib 25 s to draw for a
    20,000-pair batch (bench/report.py); a quiver is one artist."""
    at: dict[tuple, dict[float, list]] = {}
    for p in works:
        pair = (p["content_image_id"], p.get("style_image_id", p["style_artist"]), p["style_artist"])
        at.setdefault(pair, {}).setdefault(p["beta"], []).append((p["x"], p["y"]))
    tails, heads, hues = [], [], []
    for (content_id, _, style_artist), by_beta in sorted(at.items(), key=lambda kv: str(kv[0])):
        start = anchors.get(content_id)
        chain = ([(start["x"], start["y"])] if start else []) + [
            tuple(np.mean(by_beta[b], axis=0)) for b in sorted(by_beta)
        ]
        for a, b in zip(chain, chain[1:]):
            tails.append(a)
            heads.append(b)
            hues.append(colors.get(style_artist, "black"))
    if tails:
        t, h = np.asarray(tails), np.asarray(heads)
        ax.quiver(t[:, 0], t[:, 1], h[:, 0] - t[:, 0], h[:, 1] - t[:, 1], color=hues, angles="xy",
                  scale_units="xy", scale=1, width=0.0025, headwidth=4, alpha=0.8, zorder=3)  # fmt: skip


def value_heatmap(m: np.ndarray, xs: list, ys: list, labels: tuple[str, str, str], path: Path, title: str) -> Path:
    """A matrix of values (NaN: no result) with its axes' values as ticks; ``labels``: x, y and colour bar."""
    fig, ax = plt.subplots(figsize=(max(4.5, 0.8 * len(xs) + 2.5), max(3.5, 0.5 * len(ys) + 2)))
    im = ax.imshow(m, cmap="viridis", aspect="auto")
    ax.set_xticks(range(len(xs)), [str(v) for v in xs], rotation=45 if len(xs) > 8 else 0)
    ax.set_yticks(range(len(ys)), [str(v) for v in ys])
    ax.set_xlabel(labels[0])
    ax.set_ylabel(labels[1])
    for (i, j), v in np.ndenumerate(m):
        if not np.isnan(v):  # dark text on the light end of viridis, light text on the dark end
            ax.text(
                j, i, f"{v:.3f}", ha="center", va="center", fontsize=7, color="black" if im.norm(v) > 0.6 else "white"
            )
    fig.colorbar(im, ax=ax, label=labels[2])
    ax.set_title(title)
    return _save(fig, path)


def top_curves(curves: dict[str, list[tuple[int, float]]], metric: str, path: Path, title: str) -> Path | None:
    """One line per cell: its validation ``metric`` per epoch (``curves``: label -> [(epoch, value)])."""
    if not any(curves.values()):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for label, points in curves.items():
        if points:
            ax.plot([e for e, _ in points], [v for _, v in points], marker="o", ms=3, label=label)
    ax.set_xlabel("epoch")
    ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax.set_ylabel(f"validation {metric}")
    ax.grid(alpha=0.3)
    _legend_outside(ax, len(curves))
    ax.set_title(title)
    return _save(fig, path)
