"""Registering a dataset: find the images, read their labels, verify every file.

Pure: returns what it found (usable images and skipped files with reasons); the
CLI writes it to the store in one transaction.
"""

from __future__ import annotations

import csv
import math
import random
import unicodedata
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

from worker.ml.errors import ConfigError
from worker.ml.imageio import ImageError, probe

IMAGE_EXTENSIONS = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
FORMATS = ("imagefolder", "csv", "kaggle-best-artworks", "rijksmuseum")
# Rijksmuseum records name unknown makers in Dutch or English; such works have no artist to learn.
ANONYMOUS = {"", "anoniem", "anonymous", "onbekend", "unknown", "anon", "anonymous artist"}
DC = "{http://purl.org/dc/elements/1.1/}"


@dataclass(frozen=True)
class IndexedImage:
    path: str  # relative to the dataset root, posix
    label: str
    width: int
    height: int
    sha256: str
    attrs: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass
class Ingested:
    root: Path
    images: list[IndexedImage]
    skipped: list[SkippedFile]


@dataclass(frozen=True)
class Candidate:
    path: str
    label: str
    attrs: dict[str, str]


def normalise_label(text: str) -> str:
    """NFC, trimmed: the same artist typed two ways is one label."""
    return unicodedata.normalize("NFC", text).strip()


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def _imagefolder(root: Path) -> Iterable[Candidate]:
    for folder in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for f in sorted(folder.rglob("*")):
            if _is_image(f):
                yield Candidate(f.relative_to(root).as_posix(), normalise_label(folder.name), {})


def _csv(manifest: Path, label: str | None) -> Iterable[Candidate]:
    with manifest.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        columns = reader.fieldnames or []
        if "path" not in columns or "label" not in columns:
            raise ConfigError(f"{manifest} needs the columns path,label (found: {', '.join(columns) or 'none'})")
        if label and label not in columns:
            raise ConfigError(f"--label {label!r} is not a column of {manifest} ({', '.join(columns)})")
        for row in reader:
            attrs = {k: v for k, v in row.items() if k not in ("path", "label") and k is not None and v is not None}
            yield Candidate(row["path"].strip(), normalise_label(row[label or "label"] or ""), attrs)


def _kaggle(root: Path) -> Iterable[Candidate]:
    """Kaggle "Best Artworks of All Time": artists.csv + images/images/<Artist_Name>/<Artist_Name>_<n>.jpg.

    Its Albrecht Dürer folder exists twice, once with the name NFD-decomposed:
    both normalise to the same NFC label and merge (identical files are then
    dropped as duplicates by ``ingest``).
    """
    artists: dict[str, dict[str, str]] = {}
    table = root / "artists.csv"
    if table.is_file():
        with table.open(newline="", encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                name = normalise_label(row.get("name") or "")
                attrs = {k: (row.get(k) or "").strip() for k in ("years", "genre", "nationality")}
                artists[name.replace(" ", "_")] = {"name": name, **attrs}
    images = root / "images" / "images"
    if not images.is_dir():
        raise ConfigError(f"{root} has no images/images/ folder (Kaggle best-artworks layout)")
    for folder in sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")):
        key = normalise_label(folder.name)
        meta = artists.get(key, {"name": key.replace("_", " ")})
        attrs = {k: v for k, v in meta.items() if k != "name"}
        for f in sorted(folder.iterdir()):
            if _is_image(f):
                yield Candidate(f.relative_to(root).as_posix(), meta["name"], attrs)


def _creator(name: str) -> str:
    # Some dumps prefix the maker's role: "schilder: Rembrandt van Rijn".
    return normalise_label(name.split(":", 1)[1] if ":" in name else name)


def _rijksmuseum(root: Path) -> tuple[list[Candidate], list[SkippedFile]]:
    """Rijksmuseum Challenge 2014: jpg2/<id>.jpg beside xml2/<id>.xml (OAI-PMH Dublin Core)."""
    import xml.etree.ElementTree as ET  # stdlib ElementTree does not fetch external entities

    jpgs, xmls = root / "jpg2", root / "xml2"
    if not jpgs.is_dir() or not xmls.is_dir():
        raise ConfigError(f"{root} needs jpg2/ and xml2/ folders (Rijksmuseum Challenge layout)")
    found, skipped = [], []
    for f in sorted(jpgs.iterdir()):
        if not _is_image(f):
            continue
        rel = f.relative_to(root).as_posix()
        record = xmls / f"{f.stem}.xml"
        if not record.is_file():
            skipped.append(SkippedFile(rel, "no metadata record xml2/" + record.name))
            continue
        try:
            tree = ET.parse(record)
        except ET.ParseError as err:
            skipped.append(SkippedFile(rel, f"unreadable metadata: {err}"))
            continue
        creator = _creator(tree.findtext(f".//{DC}creator") or "")
        if creator.lower() in ANONYMOUS:
            skipped.append(SkippedFile(rel, f"anonymous creator {creator!r}"))
            continue
        attrs = {"type": (tree.findtext(f".//{DC}type") or "").strip(), "date": (tree.findtext(f".//{DC}date") or "").strip()}
        found.append(Candidate(rel, creator, attrs))
    return found, skipped


def _relabel(candidates: list[Candidate], label: str | None) -> list[Candidate]:
    """Train on another attribute (a period, a material) instead of the artist."""
    if not label:
        return candidates
    known = set().union(*(c.attrs for c in candidates)) if candidates else set()
    if label not in known:
        raise ConfigError(f"--label {label!r} is not an attribute of this source (have: {', '.join(sorted(known)) or 'none'})")
    return [Candidate(c.path, normalise_label(c.attrs.get(label, "")), {**c.attrs, "artist": c.label}) for c in candidates]


def _candidates(root: Path, fmt: str, label: str | None) -> tuple[Path, list[Candidate], list[SkippedFile]]:
    if fmt == "kaggle-best-artworks":
        return root, _relabel(list(_kaggle(root)), label), []
    if fmt == "rijksmuseum":
        found, skipped = _rijksmuseum(root)
        return root, _relabel(found, label), skipped
    if fmt == "imagefolder":
        if label:
            raise ConfigError("--label needs a source with attributes (csv); an imagefolder only has folder names")
        return root, list(_imagefolder(root)), []
    if fmt == "csv":
        manifest = root / "manifest.csv" if root.is_dir() else root
        if not manifest.is_file():
            raise ConfigError(f"no manifest.csv in {root}")
        return manifest.parent, list(_csv(manifest, label)), []
    raise ConfigError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")


def ingest(root: Path, fmt: str = "imagefolder", label: str | None = None, top: int | None = None,
           min_images: int | None = None, progress: Callable[[int, int], None] | None = None) -> Ingested:
    root = Path(root).expanduser()
    if top is not None and top <= 0:
        raise ConfigError(f"--top must be a positive number of labels, got {top}")
    if min_images is not None and min_images <= 0:
        raise ConfigError(f"--min-images must be positive, got {min_images}")
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    if fmt != "csv" and not root.is_dir():
        raise ConfigError(f"{root} is not a folder")
    base, candidates, skipped = _candidates(root, fmt, label)
    if not candidates:
        raise ConfigError(f"no images found under {root} (expected {fmt} layout)")

    images: list[IndexedImage] = []
    seen: dict[tuple[str, str], str] = {}  # (label, sha256) -> first path
    for done, c in enumerate(candidates, 1):
        target = (base / c.path).resolve()
        if not target.is_relative_to(base.resolve()):
            skipped.append(SkippedFile(c.path, "path leaves the dataset folder"))
        elif not c.label:
            skipped.append(SkippedFile(c.path, "no label"))
        elif not target.is_file():
            skipped.append(SkippedFile(c.path, "file not found"))
        else:
            try:
                info = probe(target)
                first = seen.setdefault((c.label, info.sha256), c.path)
                if first != c.path:
                    skipped.append(SkippedFile(c.path, f"duplicate of {first}"))
                else:
                    images.append(IndexedImage(c.path, c.label, info.width, info.height, info.sha256, c.attrs))
            except ImageError as err:
                skipped.append(SkippedFile(c.path, str(err)))
        if progress:
            progress(done, len(candidates))
    if not images:
        raise ConfigError(f"none of the {len(candidates)} files under {root} is a readable image")
    return Ingested(base, _select_labels(images, top, min_images), skipped)


def _select_labels(images: list[IndexedImage], top: int | None, min_images: int | None) -> list[IndexedImage]:
    counts = Counter(im.label for im in images)
    keep = set(counts)
    if min_images:
        keep = {lbl for lbl in keep if counts[lbl] >= min_images}
    if top:
        keep = set(sorted(keep, key=lambda lbl: (-counts[lbl], lbl))[:top])  # ties broken by name
    return [im for im in images if im.label in keep]


def parse_split(text: str) -> tuple[float, float, float]:
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(f"--split takes three fractions like 0.7,0.15,0.15, got {text!r}") from None
    if len(parts) != 3 or any(p < 0 or not math.isfinite(p) for p in parts) or abs(sum(parts) - 1) > 1e-6 or parts[0] <= 0:
        raise ConfigError(f"--split needs three non-negative fractions summing to 1 with train > 0, got {text!r}")
    return parts  # type: ignore[return-value]


def stratified_split(labels: list[str], fractions: tuple[float, float, float], seed: int) -> list[str]:
    """'train' | 'val' | 'test' per item; each label split on its own, seeded by the label name,
    so adding another artist never reshuffles this one."""
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, lbl in enumerate(labels):
        by_label[lbl].append(i)
    out = [""] * len(labels)
    for lbl, idx in by_label.items():
        random.Random(f"{seed}:{lbl}").shuffle(idx)
        n = len(idx)
        n_val = round(n * fractions[1])
        n_test = round(n * fractions[2])
        if n >= 3:  # every label is seen in validation and test when it can be
            n_val = max(n_val, 1 if fractions[1] > 0 else 0)
            n_test = max(n_test, 1 if fractions[2] > 0 else 0)
        n_val = min(n_val, n - 1)
        n_test = min(n_test, n - 1 - n_val)
        for k, i in enumerate(idx):
            out[i] = "val" if k < n_val else "test" if k < n_val + n_test else "train"
    return out
