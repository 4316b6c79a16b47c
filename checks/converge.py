"""How many steps the classifier's answers need to settle, on real paintings with real weights.

The attribution study classifies each stylization once, after the last step; an answer that still
changes in the last half of the optimisation is not yet the method's. This script takes a trained
classifier (a finished run of an atelier store) and pairs of its test split, stylizes them with
the study's defaults (noise init, L-BFGS, normalised VGG19, fp32) at ``--doses``, keeps the image after
every step of ``--checkpoints``, classifies each, and prints, for each k whose 2k was kept, the share of
answers that differ between step k and step 2k (the "changed over the last half" of a run of 2k steps)
with its exact (Clopper-Pearson) 95 % interval, beside what explains it: how much the loss still fell
over that half, how far the pixels moved, how many answers were near-ties (top-2 margin < 0.1), and how
many of the decisive answers (no near-tie at 2k) changed. The JSON keeps each checkpoint's probability
for the content and the style artist and the top-2 margin.

    python -m checks.converge --home HOME --run 3 --weights DIR/vgg19-imagenet-features.safetensors \\
        --size 128 --pairs 12 --doses 0.1,1,10 --checkpoints 50,100,200,400,800

``--noise-seed N`` starts the same pairs from another white noise (how much the start alone decides);
``--first N`` / ``--skip N`` stylize a part of the pairs (positions before N / from N on), so one run can be
done in parts that ``checks/agree.py`` reads together.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

import torch
from sqlalchemy import select
from statsmodels.stats.proportion import proportion_confint

from analysis import NEAR_TIE  # the study's own threshold, as its tables print it
from core.config import STYLE_OPTIMIZERS, StyleConfig
from core.settings import Settings
from corpus.imageio import open_rgb
from db.engine import make_engine, make_sessionmaker
from db.models import Dataset, Image, Run
from worker.ml.style import (
    build_vgg,
    from_pil,
    mean_activation_scales,
    resize_long_side,
    stylize_batch,
    to_pil,
)
from worker.residents import load_classifier


def choose_pairs(test: list, n: int, rng: random.Random) -> list:
    """n cross-artist (content, style) pairs of the test split, the style artists taken in turn so that every
    artist's style is in the sample; the content image is any other artist's."""
    by_artist: dict[str, list] = {}
    for im in test:
        by_artist.setdefault(im.label, []).append(im)
    artists = sorted(by_artist)
    pairs = []
    for i in range(n):
        style_artist = artists[i % len(artists)]
        pairs.append((rng.choice([im for im in test if im.label != style_artist]), rng.choice(by_artist[style_artist])))
    return pairs


def margin(p: torch.Tensor) -> float:
    """The top-2 probability margin of one answer."""
    top2 = p.topk(2).values
    return (top2[0] - top2[1]).item()


def settle(answers: dict, probs: dict, trace: torch.Tensor, snaps: dict, ks: list[int]) -> list[dict]:
    """For each k with 2k kept: what changed between step k and step 2k."""
    rows = []
    for k in ks:
        if 2 * k not in answers:
            continue
        n = len(answers[k])
        changed = sum(a != b for a, b in zip(answers[k], answers[2 * k]))
        lo, hi = proportion_confint(changed, n, alpha=0.05, method="beta")
        fell = ((trace[k] - trace[2 * k]) / trace[k]).median().item()
        moved = (snaps[2 * k] - snaps[k]).flatten(1).pow(2).mean(1).sqrt().median().item()
        top2 = probs[2 * k].topk(2, dim=1).values
        tie = (top2[:, 0] - top2[:, 1]) < NEAR_TIE
        ties = tie.float().mean().item()
        # A near-tie at 2k can flip on any change of the picture; the decisive answers say whether the
        # optimisation itself still moves the study's answer.
        decisive = [i for i in range(n) if not tie[i]]
        changed_decisive = sum(answers[k][i] != answers[2 * k][i] for i in decisive)
        rows.append(
            {
                "k": k,
                "n": n,
                "changed": changed / n,
                "ci": [lo, hi],
                "loss_fell": fell,
                "rms_moved": moved,
                "near_ties": ties,
                "decisive": len(decisive),
                "changed_decisive": changed_decisive,
            }
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="ATELIER_HOME of a store with a finished classifier")
    ap.add_argument("--run", type=int, required=True)
    ap.add_argument("--weights", type=Path, required=True, help="the VGG19 ImageNet safetensors file")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--pairs", type=int, default=12)
    ap.add_argument("--doses", default="0.1,1,10")
    ap.add_argument("--checkpoints", default="50,100,200,400,800")
    ap.add_argument("--init", default="noise", choices=("noise", "content"))
    ap.add_argument("--optimizer", default="lbfgs", choices=STYLE_OPTIMIZERS)
    ap.add_argument("--seed", type=int, default=0, help="chooses the pairs and the normalisation's images")
    ap.add_argument(
        "--noise-seed",
        type=int,
        default=0,
        help="the style config's seed: another white-noise start (and dose reference) for the same pairs",
    )
    ap.add_argument(
        "--first",
        type=int,
        default=0,
        help="stylize only the first N of the --pairs chosen (same pairs and normalisation as the full run)",
    )
    ap.add_argument(
        "--skip",
        type=int,
        default=0,
        help="leave out the first N of the pairs (another part of the run has them); --first still counts from the start",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args()
    if args.skip >= (args.first or args.pairs):
        sys.exit(f"--skip {args.skip} leaves no pair of the first {args.first or args.pairs}: nothing to stylize")
    doses = [float(d) for d in args.doses.split(",")]
    ks = sorted(int(k) for k in args.checkpoints.split(","))
    settings = Settings.from_env({"ATELIER_HOME": str(args.home)})
    with make_sessionmaker(make_engine(settings.database_url))() as s:
        run = s.get(Run, args.run)
        ds = s.get(Dataset, run.dataset_id)
        classify = load_classifier(s, run, list(ds.classes), settings.artifacts, torch.device("cpu"))
        images = s.scalars(select(Image).where(Image.dataset_id == ds.id, Image.status == "ok")).all()
        root = Path(ds.root)
    picture = {im.id: from_pil(resize_long_side(open_rgb(root / im.path), args.size)) for im in images}
    rng = random.Random(args.seed)
    pairs = choose_pairs([im for im in images if im.split == "test"], args.pairs, rng)
    train = [im for im in images if im.split == "train"]
    vgg = build_vgg("vgg19", args.weights, pool="avg")
    vgg.rescale(mean_activation_scales(vgg, [picture[im.id] for im in rng.sample(train, min(64, len(train)))]))
    cfg = StyleConfig(steps=ks[-1], size=args.size, init=args.init, optimizer=args.optimizer, seed=args.noise_seed)
    t0 = time.perf_counter()
    rows, answers_all, stylizations = [], {}, []
    # One pair (all its doses) per call: each content image keeps its own shape.
    for c, st in pairs[args.skip : args.first or None]:
        r = stylize_batch(
            torch.stack([picture[c.id]] * len(doses)),
            [picture[st.id]] * len(doses),
            cfg,
            vgg,
            pair_seeds=[c.id * 1000 + st.id] * len(doses),
            doses=doses,
            snapshot_steps=tuple(ks),
            precision="fp32",
        )
        probs = {k: classify.probabilities([to_pil(x) for x in r.snapshots[k]]) for k in ks}
        answers = {k: [classify.classes[i] for i in p.argmax(1).tolist()] for k, p in probs.items()}
        rows.append((answers, probs, r.trace, r.snapshots))
        for i, dose in enumerate(doses):
            stylizations.append(
                {"content": c.path, "style": st.path, "content_artist": c.label, "style_artist": st.label,
                 "dose": dose, "answers": {k: answers[k][i] for k in ks},
                 "loss": {k: r.trace[k, i].item() for k in ks},
                 "evaluations": {k: r.evaluations_at[k] for k in ks},
                 "p_content": {k: probs[k][i, classify.classes.index(c.label)].item() for k in ks},
                 "p_style": {k: probs[k][i, classify.classes.index(st.label)].item() for k in ks},
                 "margin": {k: margin(probs[k][i]) for k in ks}}
            )  # fmt: skip
        for k in ks:
            answers_all.setdefault(k, []).extend(answers[k])
        print(f"  {c.label} <- {st.label}: answers {[answers[ks[-1]]]} ({time.perf_counter() - t0:.0f} s)", flush=True)
    merged = settle(
        answers_all,
        {k: torch.cat([r[1][k] for r in rows]) for k in ks},
        torch.cat([r[2] for r in rows], dim=1),
        {k: torch.cat([r[3][k] for r in rows]) for k in ks},
        ks,
    )
    n = len(answers_all[ks[-1]])
    print(
        f"{n} stylizations ({len(rows)} pairs x doses {doses}), {args.size} px, init {args.init}, "
        f"{args.optimizer}, {time.perf_counter() - t0:.0f} s"
    )
    print("   k -> 2k   changed  (95% CI)       loss fell  rms moved  near-ties at 2k  changed/decisive")
    for m in merged:
        print(
            f"{m['k']:>5} -> {2 * m['k']:<5}{m['changed']:>6.2f}  ({m['ci'][0]:.2f}-{m['ci'][1]:.2f})"
            f"{m['loss_fell']:>13.3f}{m['rms_moved']:>11.4f}{m['near_ties']:>10.2f}"
            f"{m['changed_decisive']:>12}/{m['decisive']}"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": {k: str(v) for k, v in vars(args).items()}, "rows": merged, "stylizations": stylizations},
                indent=1,
            )
        )


if __name__ == "__main__":
    main()
