"""The `stylize` job: one chunk of (content, style) pairs, stylized and classified.

Loads the VGG and the classifier once, stylizes the chunk in device batches of
pairs of the same shape, saves each result as PNG, classifies it, and writes one
`stylizations` row per pair (idempotently, keyed by the pair's hash). The
unstylized content and style images are classified too.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import load_file
from sqlalchemy import select

from db.models import Dataset, Image, Prediction, Run, Stylization
from db.upsert import upsert
from worker.artifacts import artifact_path
from worker.lifecycle import JobContext, require_row
from worker.ml.errors import ConfigError
from worker.ml.augment import make_augment
from worker.ml.imageio import open_rgb, square_crop
from worker.ml.models import build_model
from worker.ml.config import StyleConfig, TrainConfig
from worker.ml.style import StyleResult, build_vgg, from_pil, resize_long_side, stylize_batch, to_pil
from worker.ml.train import pick_device
from worker.oom import halve_batch


class Classifier:
    """A trained run's best checkpoint, answering with labels and top-3 probabilities."""

    def __init__(self, run: Run, classes: list[str], artifacts: Path, device: torch.device):
        cfg = TrainConfig(**{**run.config, "dense": tuple(run.config["dense"])})
        self.model = build_model(cfg.model_config())
        self.model.load_state_dict(load_file(str(artifact_path(artifacts, run.checkpoint_path))))
        self.model.to(device).eval()
        self.size, self.classes, self.device, self.run_id = cfg.image_size, classes, device, run.id
        self.prepare = make_augment("none", cfg.image_size, train=False)

    @torch.no_grad()
    def __call__(self, images: list, batch: int = 64) -> list[list]:
        """PIL images -> [[label, p], ...] top-3 per image, best first; ``batch`` images at a time."""
        answers = []
        for start in range(0, len(images), batch):
            part = images[start:start + batch]
            x = torch.stack([torch.from_numpy(square_crop(im, self.size)).permute(2, 0, 1) for im in part])
            probs = self.model(self.prepare(x.to(self.device), None)).float().softmax(1)
            p, i = probs.topk(min(3, probs.shape[1]), dim=1)
            answers += [[[self.classes[k], round(v, 6)] for k, v in zip(ki, pi)] for ki, pi in zip(i.tolist(), p.tolist())]
        return answers


def outcome(predicted: str, content_artist: str, style_artist: str) -> str:
    """Whom the classifier named. A same-artist pair counts as `content` when named."""
    if predicted == content_artist:
        return "content"
    if predicted == style_artist:
        return "style"
    return "other"


def run_stylize(ctx: JobContext) -> None:
    p = ctx.params
    cfg = StyleConfig(**p["style"])
    device = pick_device()
    with ctx.sessions() as s:
        run = require_row(s, Run, p["classifier_run_id"], "classifier run")
        if not run.checkpoint_path:
            raise ConfigError(f"classifier run {run.id} has no checkpoint (it has not finished an epoch)")
        ds = s.get(Dataset, run.dataset_id)
        ids = sorted({pair["content"] for pair in p["pairs"]} | {pair["style"] for pair in p["pairs"]})
        rows = {im.id: im for im in s.scalars(select(Image).where(Image.id.in_(ids), Image.status == "ok"))}
        if missing := [i for i in ids if i not in rows]:
            raise ConfigError(f"pairs name {len(missing)} image(s) not in the store, e.g. {missing[0]}")
        root, classes = Path(ds.root), list(ds.classes)
        done = set(s.scalars(select(Stylization.pair_hash).where(Stylization.pair_hash.in_([q["hash"] for q in p["pairs"]]))))
        s.expunge_all()
    classify = Classifier(run, classes, ctx.artifacts, device)
    torch.manual_seed(cfg.seed)
    vgg, vgg_used = build_vgg(cfg.vgg, p.get("vgg_weights"), device)

    originals = {i: open_rgb(root / rows[i].path) for i in ids}
    # The unstylized images, so the analysis can tell classifier error from the effect of style.
    answers = classify([originals[i] for i in ids], p["device_batch"])
    with ctx.write() as s:
        upsert(s, Prediction, [
            {"run_id": run.id, "image_id": i, "label": rows[i].label, "predicted": a[0][0],
             "correct": a[0][0] == rows[i].label, "top3": a} for i, a in zip(ids, answers)
        ], keys=("run_id", "image_id"))

    todo = [q for q in p["pairs"] if q["hash"] not in done]  # a retried chunk skips finished pairs
    buckets: dict[tuple, list] = defaultdict(list)
    for q in todo:
        content = from_pil(resize_long_side(originals[q["content"]], cfg.size))
        buckets[tuple(content.shape)].append((q, content))
    try:
        _stylize_chunk(ctx, cfg, classify, vgg, vgg_used, device, buckets, rows, originals, len(p["pairs"]) - len(todo))
    except torch.OutOfMemoryError as err:
        # Finished pairs are stored; the retry skips them and goes on with smaller device batches.
        raise halve_batch(p, ("device_batch",), err) or err from err


def _stylize_chunk(ctx: JobContext, cfg: StyleConfig, classify: Classifier, vgg, vgg_used: str, device, buckets, rows,
                   originals, finished: int) -> None:
    p, run_id = ctx.params, classify.run_id
    for shape, items in buckets.items():
        for start in range(0, len(items), p["device_batch"]):
            part = items[start:start + p["device_batch"]]
            content = torch.stack([c for _, c in part])
            style = torch.stack([from_pil(originals[q["style"]].resize((shape[2], shape[1]))) for q, _ in part])
            pair_cfg = [StyleConfig(**{**p["style"], "style_weight": q["style_weight"]}) for q, _ in part]
            result = _stylize_by_weight(content, style, pair_cfg, vgg, [q["seed"] for q, _ in part], device)
            pictures = [to_pil(img) for img in result.images]
            answers = classify(pictures, p["device_batch"])
            out_rows = []
            for (q, _), pic, ans, c_loss, s_loss in zip(part, pictures, answers, result.content_loss, result.style_loss):
                rel = Path("stylized") / p["batch_id"] / f"{q['hash'][:16]}.png"
                path = ctx.artifact(rel)
                path.parent.mkdir(parents=True, exist_ok=True)
                pic.save(path)
                c_art, s_art = rows[q["content"]].label, rows[q["style"]].label
                out_rows.append({
                    "pair_hash": q["hash"], "batch_id": p["batch_id"], "job_id": ctx.job_id,
                    "content_image_id": q["content"], "content_artist": c_art, "style_image_id": q["style"],
                    "style_artist": s_art, "content_weight": cfg.content_weight, "style_weight": q["style_weight"],
                    "steps": cfg.steps, "size": cfg.size, "optimizer": cfg.optimizer, "vgg_weights": vgg_used,
                    "content_loss": float(c_loss), "style_loss": float(s_loss), "classifier_run_id": run_id,
                    "predicted": ans[0][0], "top3": ans, "outcome": outcome(ans[0][0], c_art, s_art), "image_path": rel.as_posix(),
                })
            with ctx.write() as s:
                upsert(s, Stylization, out_rows, keys=("pair_hash",))
            finished += len(part)
            ctx.progress(finished / len(p["pairs"]), f"{finished}/{len(p['pairs'])} pairs")


def _stylize_by_weight(content, style, cfgs: list[StyleConfig], vgg, seeds, device):
    """One optimisation per distinct style weight present in the device batch (weights are per run, not per pair)."""
    images = torch.empty_like(content)
    c_loss, s_loss, total = (torch.empty(len(cfgs)) for _ in range(3))
    for weight in sorted({c.style_weight for c in cfgs}):
        idx = [i for i, c in enumerate(cfgs) if c.style_weight == weight]
        r = stylize_batch(content[idx], style[idx], cfgs[idx[0]], vgg, pair_seeds=[seeds[i] for i in idx], device=device)
        images[idx], c_loss[idx], s_loss[idx], total[idx] = r.images, r.content_loss, r.style_loss, r.total_loss
    return StyleResult(images, c_loss, s_loss, total)
