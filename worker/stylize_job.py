"""The `stylize` job: one chunk of (content, style) pairs, stylized, classified, with matched controls.

Every picture the classifier sees takes one path: the painting resized to the
batch's long side (Lanczos, 8-bit), then, for stylized works, the optimised
image rounded to 8 bits; each is saved as PNG (lossless) and classified through
the run's own evaluation path (``worker.ml.classify``). The unstylized content
and style images of a chunk are classified on that same path (a beta = 0 null
control) into ``style_controls``, never into the run's test predictions; a
stylization differs from its control only in the optimisation.

Pairs with any mix of doses share a device batch (losses are per pair). A pair
carries either a scale-free dose (``worker.ml.dose``: its beta is set from its own
loss scales) or a raw beta (the paper's ``--style-weight``); the row records both
the dose and the beta used. The classifier is pinned: the batch names its
checkpoint's sha256, a chunk that finds another file fails, and every control and
stylization records the sha256 with the probabilities for every class. The
answer is also taken at 1/4 and 1/2 of the steps (``answers``), so a reader can
see whether it had settled.

Rows are written per device batch, idempotently (keyed by the pair's hash), so a
retried chunk redoes only the batch in flight.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import torch
from sqlalchemy import select

from core.config import StyleConfig
from core.errors import ConfigError
from core.style_batch import StyleChunk, StylePair
from corpus.imageio import open_rgb
from corpus.thumbs import save_thumbnail, thumb_relative
from db.models import Dataset, Image, Run, StyleControl, Stylization
from db.upsert import upsert
from worker.lifecycle import JobContext, require_row
from worker.ml.classify import Classifier, top3
from worker.ml.style import (
    device_batch_for,
    from_pil,
    resize_long_side,
    stylize_batch,
    to_pil,
)
from worker.ml.train import pick_device
from worker.oom import halve_batch
from worker.residents import resident_classifier, style_vgg


def outcome(predicted: str, content_artist: str, style_artist: str) -> str:
    """Whom the classifier named: content, style or other artist; a same-artist pair is its own outcome, `same`."""
    if content_artist == style_artist:
        return "same"
    if predicted == content_artist:
        return "content"
    if predicted == style_artist:
        return "style"
    return "other"


def run_stylize(ctx: JobContext) -> None:
    p = ctx.params
    chunk = StyleChunk.from_dict(p)
    cfg = chunk.style
    device = pick_device()
    norm_ids = chunk.vgg_norm.images if chunk.vgg_norm else ()
    with ctx.sessions() as s:
        run = require_row(s, Run, chunk.classifier_run_id, "classifier run")
        ds = s.get(Dataset, run.dataset_id)
        classify = resident_classifier(s, run, list(ds.classes), ctx.artifacts, device)
        if chunk.classifier_sha256 and classify.sha256 != chunk.classifier_sha256:
            raise ConfigError(
                f"classifier run {run.id}'s checkpoint is not the one the batch was submitted with "
                f"(sha256 {classify.sha256[:12]}, batch {chunk.classifier_sha256[:12]})"
            )
        ids = sorted({q.content for q in chunk.pairs} | {q.style for q in chunk.pairs})
        wanted = sorted(set(ids) | set(norm_ids))
        rows = {im.id: im for im in s.scalars(select(Image).where(Image.id.in_(wanted), Image.status == "ok"))}
        if missing := [i for i in wanted if i not in rows]:
            raise ConfigError(f"pairs name {len(missing)} image(s) not in the store, e.g. {missing[0]}")
        root = Path(ds.root)
        done = set(
            s.scalars(select(Stylization.pair_hash).where(Stylization.pair_hash.in_([q.hash for q in chunk.pairs])))
        )
        controlled = set(
            s.scalars(
                select(StyleControl.image_id).where(
                    StyleControl.classifier_run_id == run.id,
                    StyleControl.checkpoint_sha256 == classify.sha256,
                    StyleControl.size == cfg.size,
                    StyleControl.image_id.in_(ids),
                )
            )
        )
        s.expunge_all()

    def picture(i: int):
        """The first step of every path: the painting at the batch's long side, 8-bit."""
        return resize_long_side(open_rgb(root / rows[i].path), cfg.size)

    pictures = {i: picture(i) for i in ids}
    write_controls(ctx, classify, run.id, cfg.size, pictures, rows, [i for i in ids if i not in controlled])
    todo = [q for q in chunk.pairs if q.hash not in done]  # a retried chunk skips finished pairs
    if not todo:
        return
    vgg = style_vgg(ctx, chunk, device, picture)  # normalisation images are read only when not yet computed
    buckets: dict[tuple, list[tuple[StylePair, torch.Tensor]]] = defaultdict(list)
    for q in todo:
        content = from_pil(pictures[q.content])
        buckets[tuple(content.shape)].append((q, content))
    try:
        _stylize_chunk(ctx, chunk, classify, vgg, device, buckets, rows, pictures, len(chunk.pairs) - len(todo))
    except torch.OutOfMemoryError as err:
        # Finished pairs are stored; the retry skips them and goes on with smaller device batches.
        raise halve_batch(p, ("device_batch",), err) or err from err


def write_controls(
    ctx: JobContext, classify: Classifier, run_id: int, size: int, pictures, rows, ids: list[int]
) -> None:
    """Classify the unstylized pictures on the stylized works' path and store them as controls (PNG + row)."""
    if not ids:
        return
    probs = classify.probabilities([pictures[i] for i in ids])
    answers = top3(probs, classify.classes)
    out = []
    for i, a, pv in zip(ids, answers, probs.tolist()):
        rel = Path("controls") / f"run-{run_id}" / (classify.sha256 or "unpinned")[:16] / str(size) / f"{i}.png"
        save_picture(ctx, rel, pictures[i])
        out.append(
            {
                "classifier_run_id": run_id,
                "image_id": i,
                "size": size,
                "label": rows[i].label,
                "predicted": a[0][0],
                "correct": a[0][0] == rows[i].label,
                "top3": a,
                "checkpoint_sha256": classify.sha256,
                "probs": dict(zip(classify.classes, (round(v, 6) for v in pv))),
                "image_path": rel.as_posix(),
            }
        )
    with ctx.write() as s:
        upsert(s, StyleControl, out, keys=("classifier_run_id", "checkpoint_sha256", "image_id", "size"))


def save_picture(ctx: JobContext, rel: Path, picture) -> None:
    """The PNG a row names, and its thumbnail for reports (``corpus.thumbs``), made now while the picture is
    in memory rather than decoded again by every report."""
    path = ctx.artifact(rel)
    path.parent.mkdir(parents=True, exist_ok=True)
    picture.save(path)
    save_thumbnail(picture, ctx.artifact(thumb_relative(rel.as_posix())))


CPU_DEVICE_BATCH = 4  # a CPU gains little from wider batches and the chunk's progress stays fine-grained


def pick_device_batch(p: dict, cfg: StyleConfig, device, shape) -> int:
    """The params' device batch, or (null) what the device's free memory fits; written back into ``p`` so an
    OOM retry halves the batch that really ran."""
    if not p.get("device_batch"):
        if device.type == "cuda":
            free, _ = torch.cuda.mem_get_info(device)
            p["device_batch"] = device_batch_for(free, shape[-2], shape[-1], cfg.vgg, cfg.history)
        else:
            p["device_batch"] = CPU_DEVICE_BATCH
    return p["device_batch"]


def step_ticker(ctx: JobContext, cfg: StyleConfig, finished: int, size: int):
    """Progress inside one optimisation (minutes on a CPU), and a cancel noticed within about a second."""
    total = len(ctx.params["pairs"])

    def on_eval(calls: int) -> None:
        share = min(calls / (cfg.steps + 1), 1.0)
        ctx.tick(
            (finished + share * size) / total, f"{finished}/{total} pairs; step {min(calls, cfg.steps)}/{cfg.steps}"
        )

    return on_eval


def snapshot_steps(steps: int) -> tuple[int, ...]:
    """Where the answer is taken on the way: after 1/4 and 1/2 of the steps (the end is the row's answer)."""
    return tuple(sorted({k for k in (steps // 4, steps // 2) if 0 < k < steps}))


def _stylize_chunk(
    ctx: JobContext, chunk: StyleChunk, classify: Classifier, vgg, device, buckets, rows, pictures, finished: int
) -> None:
    cfg = chunk.style
    # Sized once per chunk for its largest picture (buckets differ in aspect, hence in pixels per pair).
    largest = max((items[0][1].shape for items in buckets.values()), key=lambda s: s[-2] * s[-1])
    batch = pick_device_batch(ctx.params, cfg, device, largest)
    # One VGG and one size per chunk: a style image's Grams serve every pair and every dose that names it (a
    # dose batch repeats each pair once per dose).
    targets: dict = {}
    for items in buckets.values():
        for start in range(0, len(items), batch):
            part = items[start : start + batch]
            result = stylize_batch(
                torch.stack([c for _, c in part]),
                [from_pil(pictures[q.style]) for q, _ in part],  # each at its own aspect, never stretched
                cfg,
                vgg,
                device,
                pair_seeds=[q.seed for q, _ in part],
                # a dose batch's betas are set from each pair's own loss scales; a raw-beta batch's are given
                **chunk.treatment.keywords([q.level for q, _ in part]),
                on_eval=step_ticker(ctx, cfg, finished, len(part)),
                snapshot_steps=snapshot_steps(cfg.steps),
                target_keys=[(q.content, q.style) for q, _ in part],
                target_cache=targets,
            )
            works = [to_pil(img) for img in result.images]
            probs = classify.probabilities(works)
            on_the_way = {k: classify.probabilities([to_pil(img) for img in x]) for k, x in result.snapshots.items()}
            out_rows = []
            for k, ((q, _), work) in enumerate(zip(part, works)):
                rel = Path("stylized") / chunk.batch_id / f"{q.hash[:16]}.png"
                save_picture(ctx, rel, work)
                trail = {step: pk[k] for step, pk in on_the_way.items()} | {cfg.steps: probs[k]}
                out_rows.append(stylization_row(ctx, chunk, classify, q, rows, result, k, trail, device, rel))
            with ctx.write() as s:
                upsert(s, Stylization, out_rows, keys=("pair_hash",))
            finished += len(part)
            ctx.progress(finished / len(chunk.pairs), f"{finished}/{len(chunk.pairs)} pairs")


def stylization_row(
    ctx, chunk: StyleChunk, classify: Classifier, q: StylePair, rows, result, k: int, trail, device, rel
) -> dict:
    """The stored record of pair ``q`` (row ``k`` of ``result``); ``trail``: {step: (K,) probabilities}."""
    cfg, vgg_record = chunk.style, chunk.vgg_weights
    c_art, s_art = rows[q.content].label, rows[q.style].label
    classes = classify.classes

    def answer(pv: torch.Tensor) -> tuple[str, float, float]:
        return classes[int(pv.argmax())], float(pv[classes.index(c_art)]), float(pv[classes.index(s_art)])

    answers = [[step, *answer(pv)] for step, pv in sorted(trail.items())]
    final = trail[cfg.steps]
    predicted, p_content, p_style = answer(final)
    half = [a[1] for a in answers if a[0] == cfg.steps // 2]
    ratio = float(result.loss_ratio[k])
    return {
        "pair_hash": q.hash,
        "batch_id": chunk.batch_id,
        "job_id": ctx.job_id,
        "content_image_id": q.content,
        "content_artist": c_art,
        "style_image_id": q.style,
        "style_artist": s_art,
        "content_weight": cfg.content_weight,
        "style_weight": float(result.beta[k]),
        "dose": q.level if chunk.treatment.dosed else None,
        "balance": _finite(float(result.balance[k])),
        "steps": cfg.steps,
        "size": cfg.size,
        "optimizer": cfg.optimizer,
        "init": cfg.init,
        "pool": cfg.pool,
        "loss": cfg.loss,
        "seed": q.seed,
        "tv_weight": cfg.tv_weight,
        "vgg_weights": vgg_record.name,
        "vgg_weights_sha256": vgg_record.sha256,
        "vgg_norm": chunk.vgg_norm.key if chunk.vgg_norm else "none",
        "content_loss": float(result.content_loss[k]),
        "style_loss": float(result.style_loss[k]),
        "loss_ratio": _finite(ratio),
        "classifier_run_id": chunk.classifier_run_id,
        "checkpoint_sha256": classify.sha256,
        "predicted": predicted,
        "top3": top3(final[None], classes)[0],
        "probs": dict(zip(classes, (round(v, 6) for v in final.tolist()))),
        "p_content": p_content,
        "p_style": p_style,
        "answers": answers,
        "predicted_half": half[0] if half else None,
        "outcome": outcome(predicted, c_art, s_art),
        "precision": "bf16" if device.type == "cuda" else "fp32",  # stylize_batch's default autocast is CUDA-only
        "device": device.type,
        "steps_done": int(result.steps_done[k]),  # < steps: the optimiser stopped the pair early, for stop_reason
        "stop_reason": result.stop_reason[k],
        "image_path": rel.as_posix(),
    }


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None
