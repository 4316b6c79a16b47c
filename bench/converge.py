"""How many steps the classifier's answers need to settle, on real paintings with real weights.

The attribution study classifies each stylization once, after the last step; an answer that still
changes in the last half of the optimisation is not yet the method's. This script takes a trained
classifier (a finished run of an atelier store) and pairs of its test split, stylizes them with
the study's defaults (noise init, L-BFGS, normalised VGG19) at ``--doses``, keeps the image after
every step of ``--checkpoints``, classifies each, and prints, for each k, the share of answers that
differ between step k and step 2k (the "changed over the last half" of a run of 2k steps).

    python bench/converge.py --home HOME --run 3 --weights DIR/vgg19-imagenet-features.safetensors \\
        --size 64 --pairs 8 --doses 1,100 --checkpoints 50,100,200,400
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

import torch
from sqlalchemy import select

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.config import StyleConfig  # noqa: E402
from core.settings import Settings  # noqa: E402
from corpus.imageio import open_rgb  # noqa: E402
from db.engine import make_engine, make_sessionmaker  # noqa: E402
from db.models import Dataset, Image, Run  # noqa: E402
from worker.ml.style import (  # noqa: E402
    build_vgg,
    from_pil,
    mean_activation_scales,
    resize_long_side,
    stylize_batch,
    to_pil,
)
from worker.residents import load_classifier  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, required=True, help="ATELIER_HOME of a store with a finished classifier")
    ap.add_argument("--run", type=int, required=True)
    ap.add_argument("--weights", type=Path, required=True, help="the VGG19 ImageNet safetensors file")
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--pairs", type=int, default=8)
    ap.add_argument("--doses", default="1,100")
    ap.add_argument("--checkpoints", default="50,100,200,400")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
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
    test = [im for im in images if im.split == "test"]
    train = [im for im in images if im.split == "train"]
    rng = random.Random(args.seed)
    pairs = []
    while len(pairs) < args.pairs:
        c, st = rng.sample(test, 2)
        if c.label != st.label and picture[c.id].shape == picture[st.id].shape:
            pairs.append((c, st))
    vgg = build_vgg("vgg19", args.weights, pool="avg")
    vgg.rescale(mean_activation_scales(vgg, [picture[im.id] for im in rng.sample(train, min(64, len(train)))]))
    content = torch.stack([picture[c.id] for c, _ in pairs for _ in doses])
    styles = [picture[st.id] for _, st in pairs for _ in doses]
    t0 = time.perf_counter()
    r = stylize_batch(
        content,
        styles,
        StyleConfig(steps=ks[-1], size=args.size),
        vgg,
        pair_seeds=[c.id * 1000 + st.id for c, st in pairs for _ in doses],
        doses=doses * len(pairs),
        snapshot_steps=tuple(ks),
    )
    answers = {k: [a[0][0] for a in classify([to_pil(x) for x in r.snapshots[k]])] for k in ks}
    n = len(content)
    print(f"{n} stylizations ({len(pairs)} pairs x doses {doses}), {args.size} px, {time.perf_counter() - t0:.0f} s")
    for k in ks:
        if 2 * k in answers:
            changed = sum(a != b for a, b in zip(answers[k], answers[2 * k])) / n
            print(f"  answers changed between step {k} and {2 * k}: {changed:.2f}")


if __name__ == "__main__":
    main()
