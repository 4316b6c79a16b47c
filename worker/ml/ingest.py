"""Registering a dataset: find the images, read their labels, verify every file.

Pure: returns what it found (usable images and skipped files with reasons); the
CLI writes it to the store in one transaction. Four source layouts:

- ``imagefolder``: ``root/<label>/**/<image>``.
- ``csv``: a manifest with a ``path`` and a ``label`` column and any others
  (kept as attributes). ``root`` is the manifest itself, or a folder holding
  ``manifest.csv`` (or exactly one ``*.csv``). Paths are relative to the
  manifest's folder (absolute ones must lie inside it); ``label=`` picks another
  column as the label.
- ``kaggle-best-artworks``: Kaggle's "Best Artworks of All Time":
  ``artists.csv`` and ``images/images/<Artist_Name>/<Artist_Name>_<n>.jpg``.
- ``rijksmuseum``: the Rijksmuseum Challenge 2014: ``jpg2/<id>.jpg`` beside
  ``xml2/<id>.xml`` OAI-PMH Dublin Core records.

A bad file is never fatal: it is skipped with its reason. Bad options, a
missing folder or a source with nothing usable raise ``ConfigError``.
"""

from __future__ import annotations

import csv
import math
import os
import posixpath
import random
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from worker.ml.errors import ConfigError
from worker.ml.imageio import ImageError, ImageInfo, default_threads, probe

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
FORMATS = ("imagefolder", "csv", "kaggle-best-artworks", "rijksmuseum")
KAGGLE_ATTRS = ("years", "genre", "nationality")
RIJKS_ATTRS = ("type", "date")
# Rijksmuseum records name unknown makers in Dutch or English; such works have no artist to learn.
ANONYMOUS = frozenset({"", "?", "anoniem", "anonymous", "onbekend", "unknown", "anon", "anon.",
                       "anonymous artist", "unknown artist", "onbekende kunstenaar"})


@dataclass(frozen=True)
class IndexedImage:
    path: str  # relative to the dataset root, posix
    label: str  # NFC, stripped
    width: int  # after EXIF rotation
    height: int
    sha256: str  # of the file's bytes
    attrs: dict[str, str] = field(default_factory=dict)  # other columns / metadata, e.g. genre, date


@dataclass(frozen=True)
class SkippedFile:
    path: str  # relative to the dataset root, posix
    reason: str


@dataclass
class Ingested:
    root: Path  # what ``IndexedImage.path`` is relative to (a csv manifest's folder)
    images: list[IndexedImage]
    skipped: list[SkippedFile]


@dataclass(frozen=True)
class Candidate:
    """A file a source names, with its label, before the file is verified."""

    path: str
    label: str
    attrs: dict[str, str]


def normalise_label(text: str) -> str:
    """NFC, trimmed: the same name typed (or stored by a filesystem) two ways is one label."""
    return unicodedata.normalize("NFC", text).strip()


def _is_image_name(name: str) -> bool:
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_under(folder: Path) -> Iterator[Path]:
    """Image files below ``folder`` in a stable order, hidden files and folders left out.

    Symlinked folders are followed (datasets are often assembled from links), each
    real folder once, so a link cycle cannot loop forever.
    """
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        st = os.stat(dirpath)
        if (st.st_dev, st.st_ino) in seen:
            dirnames[:] = []
            continue
        seen.add((st.st_dev, st.st_ino))
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if _is_image_name(name):
                yield Path(dirpath) / name


# --- imagefolder -------------------------------------------------------------------------------


def _imagefolder(root: Path) -> list[Candidate]:
    found = [Candidate(f.relative_to(root).as_posix(), normalise_label(folder.name), {})
             for folder in _visible_dirs(root) for f in _images_under(folder)]
    if not found:
        loose = sum(1 for f in root.iterdir() if f.is_file() and _is_image_name(f.name))
        if loose:
            raise ConfigError(f"no images in label folders under {root} ({loose} lie directly in it; "
                              "the imagefolder layout is <root>/<label>/<image>)")
    return found


# --- csv ---------------------------------------------------------------------------------------


def _manifest(root: Path) -> Path:
    if root.is_file():
        return root
    if (root / "manifest.csv").is_file():
        return root / "manifest.csv"
    tables = sorted(p for p in root.glob("*.csv") if p.is_file())
    if len(tables) == 1:
        return tables[0]
    which = f"{len(tables)} .csv files ({', '.join(p.name for p in tables)})" if tables else "no .csv file"
    raise ConfigError(f"no manifest.csv in {root} and {which}; give the manifest's path")


def _read_table(table: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of a UTF-8 csv (an Excel BOM is fine), values stripped, missing cells ''."""
    try:
        with table.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = [h.strip() for h in next(reader, [])]
            rows = [{h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h}
                    for row in reader if any(cell.strip() for cell in row)]
    except UnicodeDecodeError:
        raise ConfigError(f"{table} is not UTF-8 text") from None
    except csv.Error as err:
        raise ConfigError(f"{table} is not a readable csv: {err}") from None
    return header, rows


def _inside(base: Path, path: str) -> str | None:
    """``path`` (manifest spelling) as a posix path relative to ``base``, or None if it leaves it."""
    path = path.replace("\\", "/")  # manifests written on Windows
    if posixpath.isabs(path):
        path = os.path.relpath(path, base).replace(os.sep, "/")
    path = posixpath.normpath(path)
    # Lexical on purpose: a symlink inside the dataset may point anywhere, a "../" may not.
    return None if path == "." or path == ".." or path.startswith("../") or posixpath.isabs(path) else path


def _csv(manifest: Path, label: str | None) -> tuple[list[Candidate], list[SkippedFile]]:
    header, rows = _read_table(manifest)
    column = label or "label"
    if "path" not in header:
        raise ConfigError(f"{manifest} has no 'path' column (found: {', '.join(h for h in header if h) or 'none'})")
    if column not in header:
        hint = "--label" if label else "a 'label' column (or --label COLUMN)"
        raise ConfigError(f"{manifest} has no column {column!r}; it needs {hint} (found: {', '.join(h for h in header if h)})")
    base = manifest.parent
    found, skipped = [], []
    for line, row in enumerate(rows, 2):  # line 1 is the header
        raw = row["path"]
        rel = _inside(base, raw) if raw else None
        if not raw:
            skipped.append(SkippedFile(f"{manifest.name}:{line}", "row has no path"))
        elif rel is None:
            skipped.append(SkippedFile(raw, "path leaves the dataset folder"))
        else:
            attrs = {k: v for k, v in row.items() if k not in ("path", column)}
            found.append(Candidate(rel, normalise_label(row[column]), attrs))
    return found, skipped


# --- kaggle-best-artworks ----------------------------------------------------------------------


def _unmojibake(name: str) -> str:
    """Undo UTF-8 bytes read as code page 437, as zip tools do with the Kaggle archive.

    "Albrecht_Du╠êrer" is the NFD "Albrecht_Dürer" seen through CP437. A real name
    never survives the round trip (it would need box-drawing characters), so
    anything that fails it is left alone.
    """
    if name.isascii():
        return name
    try:
        return name.encode("cp437").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return name


def _artist_key(name: str) -> str:
    return normalise_label(_unmojibake(name)).replace(" ", "_").casefold()


def _kaggle_artists(root: Path) -> dict[str, tuple[str, dict[str, str]]]:
    """artists.csv as {folder key: (display name, attrs)}; empty when the file is absent."""
    table = root / "artists.csv"
    if not table.is_file():
        return {}
    header, rows = _read_table(table)
    if "name" not in header:
        raise ConfigError(f"{table} has no 'name' column (found: {', '.join(header)})")
    return {_artist_key(row["name"]): (normalise_label(row["name"]), {k: row[k] for k in KAGGLE_ATTRS if k in row})
            for row in rows if row["name"]}


def _kaggle(root: Path) -> list[Candidate]:
    """Folders are matched to artists.csv by name (underscores for spaces, unicode- and case-
    insensitively); a folder the table lacks is still an artist, named after the folder.

    Its Albrecht Dürer folder exists twice, once with the name NFD-decomposed (or that
    seen through CP437): every spelling normalises to one key and the folders merge
    into one label; identical files are then dropped as duplicates by ``ingest``.
    """
    artists = _kaggle_artists(root)
    nested, shallow = root / "images" / "images", root / "images"  # some re-uploads drop one level
    folders = nested if nested.is_dir() else shallow if shallow.is_dir() else None
    found: list[Candidate] = []
    if folders is not None:
        for folder in _visible_dirs(folders):
            name, attrs = artists.get(_artist_key(folder.name),
                                      (normalise_label(_unmojibake(folder.name)).replace("_", " "), {}))
            found += [Candidate(f.relative_to(root).as_posix(), name, attrs) for f in _images_under(folder)]
        return found
    # The archive's other copy: resized/resized/<Artist_Name>_<n>.jpg, all in one folder.
    flat = next((p for p in (root / "resized" / "resized", root / "resized") if p.is_dir()), None)
    if flat is None:
        raise ConfigError(f"{root} has no images/images/ folder (Kaggle best-artworks layout: "
                          "artists.csv, images/images/<Artist_Name>/<Artist_Name>_<n>.jpg)")
    for f in _images_under(flat):
        stem = f.stem.rsplit("_", 1)[0] if "_" in f.stem else f.stem
        name, attrs = artists.get(_artist_key(stem), (normalise_label(_unmojibake(stem)).replace("_", " "), {}))
        found.append(Candidate(f.relative_to(root).as_posix(), name, attrs))
    return found


# --- rijksmuseum -------------------------------------------------------------------------------


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _dc_fields(record: bytes) -> dict[str, str]:
    """First dc:creator, dc:type and dc:date of an OAI-PMH Dublin Core record.

    Matched by local name, so records with or without the dc namespace (or inside
    a full OAI-PMH response) all work. ElementTree (expat) never fetches external
    entities or DTDs; internal entity declarations are refused outright since no
    real record needs them (a "billion laughs" file would).
    """
    if b"<!ENTITY" in record:
        raise ET.ParseError("entity declarations are not allowed")
    fields: dict[str, str] = {}
    for el in ET.fromstring(record).iter():
        name = _local(el.tag) if isinstance(el.tag, str) else ""
        if name in ("creator", "type", "date") and name not in fields:
            fields[name] = " ".join("".join(el.itertext()).split())
    return fields


def _creator(name: str) -> str:
    # Some dumps prefix the maker's role: "schilder: Rembrandt Harmensz. van Rijn".
    role, sep, rest = name.partition(":")
    if sep and rest.strip() and len(role) <= 40 and not any(c.isdigit() for c in role):
        name = rest
    return normalise_label(name)


def _anonymous(creator: str) -> bool:
    # "anoniem", "Anonymous (workshop)", "onbekend, Noord-Nederland" all count.
    base = re.split(r"[(,]", creator, maxsplit=1)[0].strip().casefold()
    return base in ANONYMOUS


def _rijksmuseum(root: Path, by_creator: bool) -> tuple[list[Candidate], list[SkippedFile]]:
    """The artist is the label. Works by anonymous or unknown makers are skipped when the
    label is the artist, and kept when another attribute (type, date) is the label."""
    jpgs, xmls = root / "jpg2", root / "xml2"
    if not jpgs.is_dir() or not xmls.is_dir():
        raise ConfigError(f"{root} needs jpg2/ and xml2/ folders (Rijksmuseum Challenge 2014 layout)")
    found, skipped = [], []
    for f in _images_under(jpgs):
        rel = f.relative_to(root).as_posix()
        record = xmls / f"{f.stem}.xml"
        try:
            fields = _dc_fields(record.read_bytes())
        except FileNotFoundError:
            skipped.append(SkippedFile(rel, f"no metadata record xml2/{record.name}"))
            continue
        except (ET.ParseError, OSError) as err:
            skipped.append(SkippedFile(rel, f"unreadable metadata xml2/{record.name}: {err}"))
            continue
        creator = _creator(fields.get("creator", ""))
        if by_creator and _anonymous(creator):
            skipped.append(SkippedFile(rel, f"anonymous or unknown creator {creator!r}"))
            continue
        found.append(Candidate(rel, creator, {"type": fields.get("type", ""), "date": fields.get("date", "")}))
    return found, skipped


# --- all layouts -------------------------------------------------------------------------------


def _relabel(candidates: list[Candidate], label: str, known: tuple[str, ...]) -> list[Candidate]:
    """Train on another attribute (genre, nationality, type, date) instead of the artist."""
    if label not in known:
        raise ConfigError(f"--label {label!r} is not an attribute of this source (have: {', '.join(known)})")
    return [Candidate(c.path, normalise_label(c.attrs.get(label, "")),
                      {**{k: v for k, v in c.attrs.items() if k != label}, "artist": c.label})
            for c in candidates]


def _candidates(root: Path, fmt: str, label: str | None) -> tuple[Path, list[Candidate], list[SkippedFile]]:
    """(the folder paths are relative to, candidates, files skipped before probing)."""
    if fmt == "imagefolder":
        if label:
            raise ConfigError("--label needs a source with attributes (csv, kaggle-best-artworks, rijksmuseum); "
                              "an imagefolder only has folder names")
        return root, _imagefolder(root), []
    if fmt == "csv":
        manifest = _manifest(root)
        found, skipped = _csv(manifest, label)
        return manifest.parent, found, skipped
    if fmt == "kaggle-best-artworks":
        found = _kaggle(root)
        if label in (None, "name", "artist"):
            return root, found, []
        return root, _relabel(found, label, KAGGLE_ATTRS), []
    by_creator = label in (None, "creator", "artist")
    if not by_creator and label not in RIJKS_ATTRS:
        raise ConfigError(f"--label {label!r} is not an attribute of this source (have: {', '.join(RIJKS_ATTRS)})")
    found, skipped = _rijksmuseum(root, by_creator)
    return root, found if by_creator else _relabel(found, label, RIJKS_ATTRS), skipped


def ingest(root: Path, fmt: str = "imagefolder", label: str | None = None, top: int | None = None,
           min_images: int | None = None, progress: Callable[[int, int], None] | None = None,
           *, threads: int | None = None) -> Ingested:
    """Index and verify a dataset; see the module docstring for the layouts.

    Every file is decoded once (in ``threads`` threads) to verify it; unreadable,
    corrupt, empty, oversized and duplicate files (same bytes, same label) are
    skipped with a reason. ``min_images`` drops labels with fewer good images,
    then ``top`` keeps the labels with the most (ties broken by name).
    ``progress(done, total)`` is called as files are verified.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    if top is not None and top <= 0:
        raise ConfigError(f"--top must be a positive number of labels, got {top}")
    if min_images is not None and min_images <= 0:
        raise ConfigError(f"--min-images must be a positive number of images, got {min_images}")
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    if not root.is_dir() and not (fmt == "csv" and root.is_file()):
        raise ConfigError(f"{root} is not a folder")
    base, candidates, skipped = _candidates(root, fmt, label)
    if not candidates:
        if skipped:
            first = skipped[0]
            raise ConfigError(f"no usable images under {root}: all {len(skipped)} skipped, e.g. {first.path}: {first.reason}")
        raise ConfigError(f"no images found under {root} (expected the {fmt} layout)")

    todo, listed = [], set()
    for c in candidates:
        if not c.label:
            skipped.append(SkippedFile(c.path, f"no {label or 'label'}"))
        elif c.path in listed:
            skipped.append(SkippedFile(c.path, "listed more than once"))
        else:
            listed.add(c.path)
            todo.append(c)

    def check(c: Candidate) -> ImageInfo | ImageError:
        try:
            return probe(base / c.path)
        except ImageError as err:
            return err

    images: list[IndexedImage] = []
    first_of: dict[tuple[str, str], str] = {}  # (label, sha256) -> first path with those bytes
    # Threads: decoding releases the GIL, and a full decode of every file is most of the work.
    with ThreadPoolExecutor(max_workers=max(1, threads or default_threads())) as pool:
        for done, (c, info) in enumerate(zip(todo, pool.map(check, todo)), 1):
            if isinstance(info, ImageError):
                skipped.append(SkippedFile(c.path, info.reason))
            elif (first := first_of.setdefault((c.label, info.sha256), c.path)) != c.path:
                skipped.append(SkippedFile(c.path, f"duplicate of {first}"))
            else:
                images.append(IndexedImage(c.path, c.label, info.width, info.height, info.sha256, c.attrs))
            if progress:
                progress(done, len(todo))
    if not images:
        example = f", e.g. {skipped[0].path}: {skipped[0].reason}" if skipped else ""
        raise ConfigError(f"none of the {len(candidates)} files under {root} is a usable image{example}")
    return Ingested(base, select_labels(images, top, min_images), skipped)


def select_labels(images: list[IndexedImage], top: int | None, min_images: int | None) -> list[IndexedImage]:
    """Drop labels with fewer than ``min_images`` images, then keep the ``top`` largest (ties by name)."""
    counts = Counter(im.label for im in images)
    keep = set(counts)
    if min_images:
        keep = {lbl for lbl in keep if counts[lbl] >= min_images}
        if not keep:
            raise ConfigError(f"no label has {min_images} images or more (the largest has {max(counts.values())})")
    if top:
        keep = set(sorted(keep, key=lambda lbl: (-counts[lbl], lbl))[:top])
    return [im for im in images if im.label in keep]


def parse_split(text: str) -> tuple[float, float, float]:
    """"0.7,0.15,0.15" -> (train, val, test): non-negative, summing to 1, train > 0."""
    usage = f"--split takes train,val,test fractions summing to 1 like 0.7,0.15,0.15, got {text!r}"
    try:
        parts = tuple(float(x) for x in text.split(","))
    except ValueError:
        raise ConfigError(usage) from None
    if len(parts) != 3 or not all(math.isfinite(p) and p >= 0 for p in parts):
        raise ConfigError(usage)
    if abs(sum(parts) - 1) > 1e-6:
        raise ConfigError(f"--split fractions must sum to 1, {text!r} sums to {sum(parts):g}")
    if parts[0] <= 0:
        raise ConfigError(f"--split needs a training fraction above 0, got {text!r}")
    return parts  # type: ignore[return-value]


def _round(x: float) -> int:
    return math.floor(x + 0.5 + 1e-9)  # half up, and 20 * 0.15 = 3.0000000000000004 is 3


def stratified_split(labels: list[str], fractions: tuple[float, float, float], seed: int) -> list[str]:
    """'train' | 'val' | 'test' per item, each label split on its own.

    Each label's items (in input order) are shuffled by a generator seeded with
    the seed and the label's name, so adding or reordering other labels never
    reshuffles this one. Counts are rounded; every label keeps at least one
    training image, and one validation and one test image when it has 3 or more
    (and that fraction is not 0).
    """
    _, f_val, f_test = fractions
    by_label: dict[str, list[int]] = defaultdict(list)
    for i, lbl in enumerate(labels):
        by_label[lbl].append(i)
    out = [""] * len(labels)
    for lbl, idx in by_label.items():
        random.Random(f"{seed}:{lbl}").shuffle(idx)  # str seeds hash with sha512: stable across runs
        n = len(idx)
        n_val, n_test = _round(n * f_val), _round(n * f_test)
        if n >= 3:
            n_val = max(n_val, 1 if f_val > 0 else 0)
            n_test = max(n_test, 1 if f_test > 0 else 0)
        n_val = min(n_val, n - 1)
        n_test = min(n_test, n - 1 - n_val)
        for k, i in enumerate(idx):
            out[i] = "val" if k < n_val else "test" if k < n_val + n_test else "train"
    return out
