"""PNG figures for results: training curves and confusion matrices (matplotlib, no display)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only; no display on workers or CI
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


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
    from worker.ml.errors import ConfigError

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


def attribution_plots(pairs: list[dict], by_weight: list[tuple], artifacts: Path, originals: dict[int, Path],
                      out: Path, tag: str) -> list[Path]:
    """Style-attribution heatmap per (style, content) artist, dose-response curve, contact sheet."""
    from PIL import Image

    written = []
    styles = sorted({p["style_artist"] for p in pairs})
    contents = sorted({p["content_artist"] for p in pairs})
    if pairs:
        m = np.full((len(styles), len(contents)), np.nan)
        for i, s in enumerate(styles):
            for j, c in enumerate(contents):
                cell = [p for p in pairs if p["style_artist"] == s and p["content_artist"] == c]
                if cell:
                    m[i, j] = sum(p["outcome"] == "style" for p in cell) / len(cell)
        fig, ax = plt.subplots(figsize=(0.7 * len(contents) + 3, 0.5 * len(styles) + 2))
        im = ax.imshow(m, cmap="magma", vmin=0, vmax=1)
        ax.set_xticks(range(len(contents)), contents, rotation=45, ha="right")
        ax.set_yticks(range(len(styles)), styles)
        ax.set_xlabel("content artist")
        ax.set_ylabel("style artist")
        fig.colorbar(im, ax=ax, label="named the style artist")
        ax.set_title(f"batch {tag}: style attribution")
        fig.tight_layout()
        written.append(out / f"attribution-{tag}-heatmap.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    if by_weight:
        fig, ax = plt.subplots(figsize=(6, 4))
        weights = [k[0] for k, _, _ in by_weight]
        for outcome, color in (("content", "tab:blue"), ("style", "tab:red"), ("other", "tab:gray")):
            _, rate, lo, hi = zip(*(cells[outcome] for _, _, cells in by_weight))
            ax.plot(weights, rate, marker="o", color=color, label=outcome)
            ax.fill_between(weights, lo, hi, color=color, alpha=0.15)
        ax.set_xscale("log")
        ax.set_ylim(0, 1)
        ax.set_xlabel("style weight β (α fixed)")
        ax.set_ylabel("share of pairs (Wilson 95 %)")
        ax.legend()
        ax.set_title(f"batch {tag}: dose-response")
        fig.tight_layout()
        written.append(out / f"attribution-{tag}-dose-response.png")
        fig.savefig(written[-1], dpi=120)
        plt.close(fig)

    shown = pairs[:8]
    if shown:
        fig, axes = plt.subplots(len(shown), 3, figsize=(7, 2.3 * len(shown)), squeeze=False)
        for row, p in zip(axes, shown):
            for ax, path, title in zip(row, (originals[p["content_image_id"]], originals[p["style_image_id"]],
                                             artifacts / p["image_path"]),
                                       (f"content: {p['content_artist']}", f"style: {p['style_artist']}",
                                        f"β={p['style_weight']:g} → {p['predicted']} ({p['outcome']})")):
                with Image.open(path) as im:
                    ax.imshow(im.convert("RGB"))
                ax.set_title(title, fontsize=8)
                ax.axis("off")
        fig.tight_layout()
        written.append(out / f"attribution-{tag}-contact-sheet.png")
        fig.savefig(written[-1], dpi=100)
        plt.close(fig)
    return written
