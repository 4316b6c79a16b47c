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

Duplicates: the same bytes twice under one label are kept once; the same bytes
under two labels cannot be told apart and every copy is skipped as ambiguous.
Near-duplicates (a resized, re-encoded copy; the same work photographed twice)
are grouped by perceptual hash (``corpus.neardup``), and ``stratified_split``
keeps every group in one split.
"""

from __future__ import annotations

import csv
import dataclasses
import math
import os
import posixpath
import random
import re
import unicodedata
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import ConfigError
from corpus.imageio import ImageError, ImageInfo, default_threads, probe
from corpus.neardup import DEFAULT_BITS, near_duplicate_groups

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
FORMATS = ("imagefolder", "csv", "kaggle-best-artworks", "rijksmuseum")
KAGGLE_ATTRS = ("years", "genre", "nationality")
RIJKS_ATTRS = ("type", "date")
# Rijksmuseum records name unknown makers in Dutch or English; such works have no artist to learn.
ANONYMOUS = frozenset(
    {
        "",
        "?",
        "anoniem",
        "anonymous",
        "onbekend",
        "unknown",
        "anon",
        "anon.",
        "anonymous artist",
        "unknown artist",
        "onbekende kunstenaar",
    }
)


# Keys ingestion adds to an image's stored attributes; a source column of the same name is kept as source_<name>.
PHASH_ATTR, GROUP_ATTR = "phash", "near_dup_group"


@dataclass(frozen=True)
class IndexedImage:
    path: str  # relative to the dataset root, posix
    label: str  # NFC, stripped
    width: int  # after EXIF rotation
    height: int
    sha256: str  # of the file's bytes
    attrs: dict[str, str] = field(default_factory=dict)  # other columns / metadata, e.g. genre, date
    phash: str | None = None  # 64-bit perceptual hash, 16 hex digits; None for a flat image
    group: int | None = None  # near-duplicate group (1, 2, ...) when it has near-duplicates

    def stored_attrs(self) -> dict[str, object]:
        """``attrs`` as the store keeps them, with the perceptual hash and the group added."""
        out: dict[str, object] = {
            (f"source_{k}" if k in (PHASH_ATTR, GROUP_ATTR) else k): v for k, v in self.attrs.items()
        }
        if self.phash is not None:
            out[PHASH_ATTR] = self.phash
        if self.group is not None:
            out[GROUP_ATTR] = self.group
        return out


@dataclass(frozen=True)
class SkippedFile:
    path: str  # relative to the dataset root, posix
    reason: str
    kind: str = "unusable"  # unusable | duplicate (same bytes, same label) | ambiguous (same bytes, other label)


@dataclass
class Ingested:
    root: Path  # what ``IndexedImage.path`` is relative to (a csv manifest's folder)
    images: list[IndexedImage]
    skipped: list[SkippedFile]
    near_dup_bits: int = DEFAULT_BITS  # the grouping threshold used; 0: not grouped

    def groups(self) -> list[list[IndexedImage]]:
        """Near-duplicate groups in group order, members in image order."""
        by: dict[int, list[IndexedImage]] = defaultdict(list)
        for im in self.images:
            if im.group is not None:
                by[im.group].append(im)
        return [by[g] for g in sorted(by)]


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
    found = [
        Candidate(f.relative_to(root).as_posix(), normalise_label(folder.name), {})
        for folder in _visible_dirs(root)
        for f in _images_under(folder)
    ]
    if not found:
        loose = sum(1 for f in root.iterdir() if f.is_file() and _is_image_name(f.name))
        if loose:
            raise ConfigError(
                f"no images in label folders under {root} ({loose} lie directly in it; "
                "the imagefolder layout is <root>/<label>/<image>)"
            )
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
            rows = [
                {h: (row[i].strip() if i < len(row) else "") for i, h in enumerate(header) if h}
                for row in reader
                if any(cell.strip() for cell in row)
            ]
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
        raise ConfigError(
            f"{manifest} has no column {column!r}; it needs {hint} (found: {', '.join(h for h in header if h)})"
        )
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
    return {
        _artist_key(row["name"]): (normalise_label(row["name"]), {k: row[k] for k in KAGGLE_ATTRS if k in row})
        for row in rows
        if row["name"]
    }


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
            name, attrs = artists.get(
                _artist_key(folder.name), (normalise_label(_unmojibake(folder.name)).replace("_", " "), {})
            )
            found += [Candidate(f.relative_to(root).as_posix(), name, attrs) for f in _images_under(folder)]
        return found
    # The archive's other copy: resized/resized/<Artist_Name>_<n>.jpg, all in one folder.
    flat = next((p for p in (root / "resized" / "resized", root / "resized") if p.is_dir()), None)
    if flat is None:
        raise ConfigError(
            f"{root} has no images/images/ folder (Kaggle best-artworks layout: "
            "artists.csv, images/images/<Artist_Name>/<Artist_Name>_<n>.jpg)"
        )
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
    return [
        Candidate(
            c.path,
            normalise_label(c.attrs.get(label, "")),
            {**{k: v for k, v in c.attrs.items() if k != label}, "artist": c.label},
        )
        for c in candidates
    ]


def _candidates(root: Path, fmt: str, label: str | None) -> tuple[Path, list[Candidate], list[SkippedFile]]:
    """(the folder paths are relative to, candidates, files skipped before probing)."""
    if fmt == "imagefolder":
        if label:
            raise ConfigError(
                "--label needs a source with attributes (csv, kaggle-best-artworks, rijksmuseum); "
                "an imagefolder only has folder names"
            )
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


def ingest(
    root: Path,
    fmt: str = "imagefolder",
    label: str | None = None,
    top: int | None = None,
    min_images: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    *,
    threads: int | None = None,
    near_dup_bits: int = DEFAULT_BITS,
) -> Ingested:
    """Index and verify a dataset; see the module docstring for the layouts.

    Every file is decoded once (in ``threads`` threads) to verify it and hash it
    (sha256 of the bytes, pHash of the pixels); unreadable, corrupt, empty and
    oversized files are skipped with a reason, and so are duplicates: a second
    copy of the same bytes under the same label, and every copy of bytes found
    under two labels or more. ``min_images`` drops labels with fewer good images,
    then ``top`` keeps the labels with the most (ties broken by name). The images
    kept are grouped by perceptual hashes at most ``near_dup_bits`` of 64 apart
    (0: no grouping). ``progress(done, total)`` is called as files are verified.
    """
    _check_options(fmt, top, min_images, near_dup_bits)
    root = Path(root).expanduser()
    if not root.exists():
        raise ConfigError(f"{root} does not exist")
    if not root.is_dir() and not (fmt == "csv" and root.is_file()):
        raise ConfigError(f"{root} is not a folder")
    base, candidates, skipped = _candidates(root, fmt, label)
    if not candidates:
        if skipped:
            first = skipped[0]
            raise ConfigError(
                f"no usable images under {root}: all {len(skipped)} skipped, e.g. {first.path}: {first.reason}"
            )
        raise ConfigError(f"no images found under {root} (expected the {fmt} layout)")
    todo = _listed_once(candidates, label, skipped)
    probed = _probe_all(base, todo, skipped, threads, progress)
    images, duplicates = _drop_duplicates(probed)
    skipped += duplicates
    if not images:
        example = f", e.g. {skipped[0].path}: {skipped[0].reason}" if skipped else ""
        raise ConfigError(f"none of the {len(candidates)} files under {root} is a usable image{example}")
    images = select_labels(images, top, min_images)
    groups = near_duplicate_groups([im.phash for im in images], near_dup_bits)
    images = [dataclasses.replace(im, group=g) if g is not None else im for im, g in zip(images, groups)]
    return Ingested(base, images, skipped, near_dup_bits)


def _check_options(fmt: str, top: int | None, min_images: int | None, near_dup_bits: int) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown --format {fmt!r}; choose from {', '.join(FORMATS)}")
    if not 0 <= near_dup_bits <= 32:
        raise ConfigError(f"--near-dup-bits must be 0 (no grouping) to 32 of 64 bits, got {near_dup_bits}")
    if top is not None and top <= 0:
        raise ConfigError(f"--top must be a positive number of labels, got {top}")
    if min_images is not None and min_images <= 0:
        raise ConfigError(f"--min-images must be a positive number of images, got {min_images}")


def _listed_once(candidates: list[Candidate], label: str | None, skipped: list[SkippedFile]) -> list[Candidate]:
    """The candidates worth probing: labelled, each path once; the others are appended to ``skipped``."""
    todo, listed = [], set()
    for c in candidates:
        if not c.label:
            skipped.append(SkippedFile(c.path, f"no {label or 'label'}"))
        elif c.path in listed:
            skipped.append(SkippedFile(c.path, "listed more than once"))
        else:
            listed.add(c.path)
            todo.append(c)
    return todo


def _probe_all(
    base: Path,
    todo: list[Candidate],
    skipped: list[SkippedFile],
    threads: int | None,
    progress: Callable[[int, int], None] | None,
) -> list[tuple[Candidate, ImageInfo]]:
    """Decode and hash every file of ``todo`` (in order); unusable ones are appended to ``skipped``."""

    def check(c: Candidate) -> ImageInfo | ImageError:
        try:
            return probe(base / c.path, phash=True)
        except ImageError as err:
            return err

    probed: list[tuple[Candidate, ImageInfo]] = []
    # Threads: decoding releases the GIL, and a full decode of every file is most of the work.
    with ThreadPoolExecutor(max_workers=max(1, threads or default_threads())) as pool:
        for done, (c, info) in enumerate(zip(todo, pool.map(check, todo)), 1):
            if isinstance(info, ImageError):
                skipped.append(SkippedFile(c.path, info.reason))
            else:
                probed.append((c, info))
            if progress:
                progress(done, len(todo))
    return probed


def _drop_duplicates(probed: list[tuple[Candidate, ImageInfo]]) -> tuple[list[IndexedImage], list[SkippedFile]]:
    """Same bytes, same label: the first copy is kept. Same bytes under two labels or more: which
    label is right cannot be told, so every copy is skipped, each naming a copy with another label."""
    by_sha: dict[str, list[Candidate]] = defaultdict(list)
    for c, info in probed:
        by_sha[info.sha256].append(c)
    images, skipped = [], []
    for c, info in probed:
        copies = by_sha[info.sha256]
        other = next((o for o in copies if o.label != c.label), None)
        if other is not None:
            n_labels = len({o.label for o in copies})
            more = f" and {n_labels - 2} other label(s)" if n_labels > 2 else ""
            skipped.append(
                SkippedFile(
                    c.path,
                    f"ambiguous: same bytes as {other.path} under label {other.label!r}{more}; every copy skipped",
                    "ambiguous",
                )
            )
        elif (first := next(o for o in copies if o.label == c.label)) is not c:
            skipped.append(SkippedFile(c.path, f"duplicate of {first.path}", "duplicate"))
        else:
            images.append(IndexedImage(c.path, c.label, info.width, info.height, info.sha256, c.attrs, info.phash))
    return images, skipped


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
    """ "0.7,0.15,0.15" -> (train, val, test): non-negative, summing to 1, train > 0."""
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


def stratified_split(
    labels: list[str], fractions: tuple[float, float, float], seed: int, groups: list[int | None] | None = None
) -> list[str]:
    """'train' | 'val' | 'test' per item, each label split on its own, every group in one split.

    Items sharing a ``groups`` value (near-duplicates) are one unit; other items
    are units of one. A group is split with the label most of its members carry
    (ties: the first by name). Each label's units (in the order of their first
    item) are shuffled by a generator seeded with the seed and the label's name,
    so adding or reordering other labels never reshuffles this one. Counts are
    rounded; walking the shuffled units, a unit goes to validation if it still
    fits there, else to test if it fits there, else to training, so without
    groups this is the plain stratified split. Every label keeps at least one
    training image, and one validation and one test unit when it has 3 units or
    more (and that fraction is not 0).
    """
    _, f_val, f_test = fractions
    members: dict[int, list[int]] = defaultdict(list)
    for i, g in enumerate(groups or ()):
        if g is not None:
            members[g].append(i)
    units: dict[str, list[list[int]]] = defaultdict(list)
    for i, lbl in enumerate(labels):
        g = groups[i] if groups else None
        if g is None:
            units[lbl].append([i])
        elif members[g][0] == i:  # a group is placed where its first member appears
            votes = Counter(labels[k] for k in members[g])
            units[min(votes, key=lambda x: (-votes[x], x))].append(members[g])
    out = [""] * len(labels)
    for lbl, unit_list in units.items():
        random.Random(f"{seed}:{lbl}").shuffle(unit_list)  # str seeds hash with sha512: stable across runs
        n = sum(len(u) for u in unit_list)
        n_val, n_test = _round(n * f_val), _round(n * f_test)
        if len(unit_list) >= 3:
            n_val = max(n_val, 1 if f_val > 0 else 0)
            n_test = max(n_test, 1 if f_test > 0 else 0)
        n_val = min(n_val, n - 1)
        n_test = min(n_test, n - 1 - n_val)
        chosen: dict[str, list[list[int]]] = {"val": [], "test": [], "train": []}
        filled = Counter()
        for u in unit_list:
            where = next((sp for sp, cap in (("val", n_val), ("test", n_test)) if filled[sp] + len(u) <= cap), "train")
            chosen[where].append(u)
            filled[where] += len(u)
        # Groups too large for a small label's targets: still one unit each for val and test.
        for sp, f in (("val", f_val), ("test", f_test)):
            if f > 0 and not chosen[sp] and len(unit_list) >= 3 and len(chosen["train"]) >= 2:
                smallest = min(chosen["train"], key=len)  # the first of the smallest, in shuffled order
                chosen["train"].remove(smallest)
                chosen[sp].append(smallest)
        for sp, us in chosen.items():
            for u in us:
                for i in u:
                    out[i] = sp
    return out
