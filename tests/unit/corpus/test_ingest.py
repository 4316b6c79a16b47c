"""Ingestion of the four source layouts, built as fixture folders here."""

import io
import unicodedata
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from core.errors import ConfigError
from corpus.ingest import ingest, parse_split, stratified_split


def img(path, color=(10, 200, 30), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def truncated_jpeg(path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "JPEG")
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])


def labels_of(out):
    return Counter(im.label for im in out.images)


# --- imagefolder -------------------------------------------------------------------------------


def test_imagefolder_skips_bad_files_with_reasons(tmp_path):
    for i in range(3):
        img(tmp_path / "Élise" / f"{i}.png", (i * 40, 0, 0))
        img(tmp_path / "Bob" / "sub" / f"{i}.JPG", (0, i * 40, 0))  # nested, upper-case extension
    (tmp_path / "Bob" / "zero.jpg").write_bytes(b"")
    truncated_jpeg(tmp_path / "Bob" / "cut.jpg")
    (tmp_path / "Bob" / "text.png").write_text("not a png")
    (tmp_path / "Bob" / "notes.txt").write_text("ignored: not an image extension")
    (tmp_path / "Bob" / ".hidden.png").write_bytes(b"x")
    img(tmp_path / "Bob" / ".cache" / "thumb.png")  # hidden folder
    img(tmp_path / ".git" / "x.png")  # hidden label folder
    calls = []
    out = ingest(tmp_path, progress=lambda done, total: calls.append((done, total)))
    assert labels_of(out) == {"Élise": 3, "Bob": 3}
    reasons = {s.path: s.reason for s in out.skipped}
    assert set(reasons) == {"Bob/zero.jpg", "Bob/cut.jpg", "Bob/text.png"}
    assert "empty" in reasons["Bob/zero.jpg"] and "truncated" in reasons["Bob/cut.jpg"].lower()
    assert "not an image" in reasons["Bob/text.png"]
    assert calls[-1] == (9, 9) and len(calls) == 9
    assert out.root == tmp_path
    first = next(im for im in out.images if im.path == "Bob/sub/0.JPG")
    assert (first.width, first.height, len(first.sha256), first.attrs) == (20, 16, 64, {})


def test_bad_roots_and_options(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        ingest(tmp_path / "f.txt")
    with pytest.raises(ConfigError, match="does not exist"):
        ingest(tmp_path / "missing")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    (tmp_path / "empty" / "a" / "notes.txt").write_text("no images here")
    with pytest.raises(ConfigError, match="no images"):
        ingest(tmp_path / "empty")
    img(tmp_path / "flat" / "0.png")
    with pytest.raises(ConfigError, match="lie directly in it"):
        ingest(tmp_path / "flat")
    (tmp_path / "bad" / "a").mkdir(parents=True)
    (tmp_path / "bad" / "a" / "x.png").write_bytes(b"")
    with pytest.raises(ConfigError, match="usable image.*empty file"):
        ingest(tmp_path / "bad")
    with pytest.raises(ConfigError, match="unknown --format 'zip'"):
        ingest(tmp_path, fmt="zip")
    with pytest.raises(ConfigError, match="--label"):
        ingest(tmp_path / "flat", label="genre")
    for kwargs, match in ((dict(top=0), "--top"), (dict(min_images=0), "--min-images"), (dict(top=-1), "--top")):
        with pytest.raises(ConfigError, match=match):
            ingest(tmp_path / "flat", **kwargs)


def test_unicode_labels_are_nfc_and_stripped(tmp_path):
    nfd = unicodedata.normalize("NFD", "Zoë Okafor ")
    img(tmp_path / nfd / "0.png")
    img(tmp_path / "Zoë Okafor" / "1.png", (1, 2, 3))  # the same artist spelled NFC: one label
    out = ingest(tmp_path)
    assert labels_of(out) == {"Zoë Okafor": 2}
    assert all(unicodedata.is_normalized("NFC", im.label) for im in out.images)


def test_duplicate_files_within_a_label_are_kept_once(tmp_path):
    img(tmp_path / "a" / "0.png", (1, 1, 1))
    img(tmp_path / "a" / "copy.png", (1, 1, 1))
    img(tmp_path / "b" / "0.png", (2, 2, 2))
    out = ingest(tmp_path)
    assert labels_of(out) == {"a": 1, "b": 1}
    assert [(s.path, s.reason, s.kind) for s in out.skipped] == [("a/copy.png", "duplicate of a/0.png", "duplicate")]


def test_the_same_bytes_under_two_labels_are_all_skipped_as_ambiguous(tmp_path):
    img(tmp_path / "a" / "0.png", (1, 1, 1))
    img(tmp_path / "a" / "copy.png", (1, 1, 1))
    img(tmp_path / "b" / "0.png", (1, 1, 1))  # same bytes, another label: which label is right?
    img(tmp_path / "c" / "x.png", (1, 1, 1))
    img(tmp_path / "a" / "fine.png", (9, 9, 9))
    img(tmp_path / "b" / "fine.png", (8, 8, 8))
    out = ingest(tmp_path)
    assert [im.path for im in out.images] == ["a/fine.png", "b/fine.png"]
    reasons = {s.path: s.reason for s in out.skipped}
    assert {s.kind for s in out.skipped} == {"ambiguous"} and len(reasons) == 4
    assert (
        reasons["a/0.png"]
        == "ambiguous: same bytes as b/0.png under label 'b' and 1 other label(s); every copy skipped"
    )
    assert reasons["b/0.png"].startswith("ambiguous: same bytes as a/0.png under label 'a'")
    assert reasons["c/x.png"].startswith("ambiguous: same bytes as a/0.png under label 'a'")


def test_top_and_min_images(tmp_path):
    for label, n in (("a", 5), ("b", 3), ("c", 3), ("d", 1)):
        for i in range(n):
            img(tmp_path / label / f"{i}.png", (i * 30, len(label), ord(label)))
    (tmp_path / "c" / "bad.png").write_bytes(b"")  # bad files do not count towards a label
    assert set(labels_of(ingest(tmp_path, top=2))) == {"a", "b"}  # b beats c by name
    assert set(labels_of(ingest(tmp_path, top=10))) == {"a", "b", "c", "d"}
    assert set(labels_of(ingest(tmp_path, min_images=3))) == {"a", "b", "c"}
    assert set(labels_of(ingest(tmp_path, min_images=2, top=1))) == {"a"}
    with pytest.raises(ConfigError, match="no label has 6 images or more"):
        ingest(tmp_path, min_images=6)


# --- csv ---------------------------------------------------------------------------------------


def write_manifest(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_csv_manifest_with_extra_columns_and_label(tmp_path):
    for i in range(4):
        img(tmp_path / "imgs" / f"{i}.png", (i * 50, 0, 0))
    write_manifest(
        tmp_path / "manifest.csv",
        "path,label,period,museum\n"
        "imgs/0.png,Rembrandt,baroque,Rijks\n"
        "./imgs/1.png, Rembrandt ,baroque,\n"
        "imgs\\2.png,Monet,impressionism,Orsay\n"  # written on Windows
        "imgs/3.png,Monet,impressionism,Orsay\n"
        "imgs/3.png,Monet,impressionism,Orsay\n"  # listed twice
        "imgs/missing.png,Monet,x,\n"
        "../escape.png,Monet,x,\n"
        "imgs/2.png,,x,\n",
    )
    out = ingest(tmp_path, fmt="csv")
    assert labels_of(out) == {"Rembrandt": 2, "Monet": 2}
    assert [im.path for im in out.images] == ["imgs/0.png", "imgs/1.png", "imgs/2.png", "imgs/3.png"]
    assert out.images[1].attrs == {"period": "baroque", "museum": ""}
    assert sorted((s.path, s.reason) for s in out.skipped) == [
        ("../escape.png", "path leaves the dataset folder"),
        ("imgs/2.png", "no label"),
        ("imgs/3.png", "listed more than once"),
        ("imgs/missing.png", "file not found"),
    ]

    by_period = ingest(tmp_path / "manifest.csv", fmt="csv", label="period")  # the manifest itself
    assert labels_of(by_period) == {"baroque": 2, "impressionism": 2}
    assert by_period.images[0].attrs == {"label": "Rembrandt", "museum": "Rijks"}
    with pytest.raises(ConfigError, match="no column 'material'"):
        ingest(tmp_path, fmt="csv", label="material")


def test_csv_manifest_elsewhere_bom_and_errors(tmp_path):
    img(tmp_path / "data" / "a.png")
    img(tmp_path / "data" / "b.png", (5, 5, 5))
    # Excel writes a byte-order mark; paths are relative to the manifest's folder.
    (tmp_path / "data" / "list.csv").write_text("path,label\na.png,Anna\nb.png,Bért\n", encoding="utf-8-sig")
    out = ingest(tmp_path / "data", fmt="csv")  # the only .csv in the folder
    assert labels_of(out) == {"Anna": 1, "Bért": 1} and out.root == tmp_path / "data"
    write_manifest(tmp_path / "data" / "other.csv", "path,label\n")
    with pytest.raises(ConfigError, match="no manifest.csv"):
        ingest(tmp_path / "data", fmt="csv")
    with pytest.raises(ConfigError, match="no 'path' column"):
        ingest(write_manifest(tmp_path / "data" / "m1.csv", "file,label\na.png,x\n"), fmt="csv")
    with pytest.raises(ConfigError, match="no column 'label'"):
        ingest(write_manifest(tmp_path / "data" / "m2.csv", "path,artist\na.png,x\n"), fmt="csv")
    (tmp_path / "data" / "m3.csv").write_bytes("path,label\na.png,D\xfcrer\n".encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        ingest(tmp_path / "data" / "m3.csv", fmt="csv")
    with pytest.raises(ConfigError, match="no images"):
        ingest(write_manifest(tmp_path / "data" / "m4.csv", "path,label\n"), fmt="csv")


# --- kaggle-best-artworks ----------------------------------------------------------------------


ARTISTS_CSV = (
    "id,name,years,genre,nationality,bio,wikipedia,paintings\n"
    '0,Albrecht Dürer,1471 - 1528,Northern Renaissance,German,"bio, with a comma",http://w,3\n'
    "1,Vincent van Gogh,1853 - 1890,Post-Impressionism,Dutch,bio,http://w,2\n"
)


def test_kaggle_layout_merges_the_durer_folders(tmp_path):
    (tmp_path / "artists.csv").write_text(ARTISTS_CSV, encoding="utf-8")
    base = tmp_path / "images" / "images"
    nfc, nfd = "Albrecht_Dürer", unicodedata.normalize("NFD", "Albrecht_Dürer")
    cp437 = nfd.encode("utf-8").decode("cp437")  # "Albrecht_Du╠êrer", as some unzip tools write it
    assert len({nfc, nfd, cp437}) == 3
    img(base / nfc / f"{nfc}_1.jpg", (200, 0, 0))
    img(base / nfd / f"{nfd}_1.jpg", (200, 0, 0))  # the same painting in both folders
    img(base / nfd / f"{nfd}_2.jpg", (0, 0, 200))
    img(base / cp437 / f"{cp437}_3.jpg", (0, 200, 200))
    img(base / "Vincent_van_Gogh" / "Vincent_van_Gogh_1.jpg", (0, 200, 0))
    img(base / "Vincent_van_Gogh" / "Vincent_van_Gogh_2.jpg", (0, 100, 0))
    img(base / "Frida_Kahlo" / "Frida_Kahlo_1.jpg", (90, 90, 0))  # not in artists.csv
    out = ingest(tmp_path, fmt="kaggle-best-artworks")
    assert labels_of(out) == {"Albrecht Dürer": 3, "Vincent van Gogh": 2, "Frida Kahlo": 1}
    assert [s.reason.split(" of ")[0] for s in out.skipped] == ["duplicate"]
    durer = next(im for im in out.images if im.label == "Albrecht Dürer")
    assert durer.attrs == {"years": "1471 - 1528", "genre": "Northern Renaissance", "nationality": "German"}

    by_genre = ingest(tmp_path, fmt="kaggle-best-artworks", label="genre")
    assert labels_of(by_genre) == {"Northern Renaissance": 3, "Post-Impressionism": 2}
    assert by_genre.images[0].attrs["artist"] == "Albrecht Dürer"
    assert [s.reason for s in by_genre.skipped if "genre" in s.reason] == ["no genre"]  # Kahlo: no metadata
    assert set(labels_of(ingest(tmp_path, fmt="kaggle-best-artworks", label="nationality"))) == {"German", "Dutch"}
    with pytest.raises(ConfigError, match="not an attribute"):
        ingest(tmp_path, fmt="kaggle-best-artworks", label="bio")


def test_kaggle_needs_its_layout(tmp_path):
    (tmp_path / "artists.csv").write_text(ARTISTS_CSV, encoding="utf-8")
    with pytest.raises(ConfigError, match="images/images"):
        ingest(tmp_path, fmt="kaggle-best-artworks")


def test_kaggle_resized_copy(tmp_path):
    (tmp_path / "artists.csv").write_text(ARTISTS_CSV, encoding="utf-8")
    img(tmp_path / "resized" / "resized" / "Vincent_van_Gogh_1.jpg")
    img(tmp_path / "resized" / "resized" / "Albrecht_Dürer_12.jpg", (1, 2, 3))
    assert labels_of(ingest(tmp_path, fmt="kaggle-best-artworks")) == {"Vincent van Gogh": 1, "Albrecht Dürer": 1}


# --- rijksmuseum -------------------------------------------------------------------------------


RECORD = """<?xml version="1.0" encoding="UTF-8"?>
<record><header><identifier>oai:rijksmuseum.nl:{stem}</identifier></header>
<metadata><oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:title>Work {stem}</dc:title><dc:creator>{creator}</dc:creator><dc:creator>second maker</dc:creator>
<dc:type>{type}</dc:type><dc:date>{date}</dc:date>
</oai_dc:dc></metadata></record>"""


def rijks(tmp_path, works):
    (tmp_path / "xml2").mkdir(exist_ok=True)
    for i, (stem, creator, kind, date) in enumerate(works):
        img(tmp_path / "jpg2" / f"{stem}.jpg", (i * 20, 0, 0))
        (tmp_path / "xml2" / f"{stem}.xml").write_text(
            RECORD.format(stem=stem, creator=creator, type=kind, date=date), encoding="utf-8"
        )


def test_rijksmuseum_layout(tmp_path):
    rijks(
        tmp_path,
        [
            ("SK-A-1", "Rembrandt Harmensz. van Rijn", "schilderij", "1642"),
            ("RP-P-1", "prentmaker: Rembrandt Harmensz. van Rijn", "prent", "1650"),
            ("SK-A-2", "anoniem", "schilderij", "1700"),
            ("SK-A-3", "Anonymous (workshop)", "schilderij", "1600"),
            ("SK-A-4", "onbekend", "prent", "1600"),
            ("SK-A-5", "", "prent", "1600"),
            ("SK-A-6", "Johannes Vermeer", "schilderij", "c. 1660"),
        ],
    )
    img(tmp_path / "jpg2" / "no-record.jpg")
    img(tmp_path / "jpg2" / "broken.jpg")
    (tmp_path / "xml2" / "broken.xml").write_text("<record><metadata>", encoding="utf-8")
    img(tmp_path / "jpg2" / "laughs.jpg")
    (tmp_path / "xml2" / "laughs.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><r><creator>&b;</creator></r>'
    )
    (tmp_path / "xml2" / "plain.xml").write_text("<r><creator>Jan Steen</creator></r>")  # no namespace
    img(tmp_path / "jpg2" / "plain.jpg", (3, 3, 3))

    out = ingest(tmp_path, fmt="rijksmuseum")
    assert labels_of(out) == {"Rembrandt Harmensz. van Rijn": 2, "Johannes Vermeer": 1, "Jan Steen": 1}
    reasons = {s.path: s.reason for s in out.skipped}
    assert sorted(reasons) == [
        "jpg2/SK-A-2.jpg",
        "jpg2/SK-A-3.jpg",
        "jpg2/SK-A-4.jpg",
        "jpg2/SK-A-5.jpg",
        "jpg2/broken.jpg",
        "jpg2/laughs.jpg",
        "jpg2/no-record.jpg",
    ]
    assert reasons["jpg2/no-record.jpg"] == "no metadata record xml2/no-record.xml"
    assert reasons["jpg2/broken.jpg"].startswith("unreadable metadata")
    assert "entity declarations" in reasons["jpg2/laughs.jpg"]
    assert "anonymous" in reasons["jpg2/SK-A-2.jpg"]
    vermeer = next(im for im in out.images if im.label == "Johannes Vermeer")
    assert vermeer.attrs == {"type": "schilderij", "date": "c. 1660"} and vermeer.path == "jpg2/SK-A-6.jpg"

    # Another attribute as the label: anonymous works count, the maker is kept as an attribute.
    by_type = ingest(tmp_path, fmt="rijksmuseum", label="type")
    assert labels_of(by_type) == {"schilderij": 4, "prent": 3}
    assert next(im for im in by_type.images if im.path == "jpg2/SK-A-2.jpg").attrs == {
        "date": "1700",
        "artist": "anoniem",
    }
    with pytest.raises(ConfigError, match="not an attribute"):
        ingest(tmp_path, fmt="rijksmuseum", label="title")


def test_rijksmuseum_needs_both_folders(tmp_path):
    img(tmp_path / "jpg2" / "a.jpg")
    with pytest.raises(ConfigError, match="xml2"):
        ingest(tmp_path, fmt="rijksmuseum")
    (tmp_path / "xml2").mkdir()
    (tmp_path / "xml2" / "a.xml").write_text(RECORD.format(stem="a", creator="anoniem", type="x", date="1"))
    with pytest.raises(ConfigError, match="all 1 skipped.*anonymous"):
        ingest(tmp_path, fmt="rijksmuseum")


# --- splits ------------------------------------------------------------------------------------


def test_parse_split():
    assert parse_split("0.7,0.15,0.15") == (0.7, 0.15, 0.15)
    assert parse_split(" 0.8, 0.2, 0 ") == (0.8, 0.2, 0.0)


@pytest.mark.parametrize(
    "text",
    ["0.5,0.1", "a,b,c", "", "0.8,0.3,-0.1", "0,0.5,0.5", "0.7,0.2,0.2", "nan,0,0", "inf,0,0", "0.5,0.25,0.25,0"],
)
def test_parse_split_errors(text):
    with pytest.raises(ConfigError, match="--split"):
        parse_split(text)


def test_stratified_split_per_label_and_deterministic():
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 3 + ["d"] * 2 + ["e"]
    split = stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
    counts = Counter(zip(labels, split))
    assert (counts["a", "train"], counts["a", "val"], counts["a", "test"]) == (14, 3, 3)
    assert (counts["b", "train"], counts["b", "val"], counts["b", "test"]) == (6, 2, 2)  # 1.5 rounds up
    assert all(counts[lbl, s] == 1 for lbl in "c" for s in ("train", "val", "test"))  # >= 1 each from 3 images
    assert counts["d", "train"] == 2 and counts["e", "train"] == 1  # too few to hold out
    assert split == stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
    assert split != stratified_split(labels, (0.7, 0.15, 0.15), seed=2)
    # Other labels added in front or interleaved do not reshuffle label a.
    mixed = [x for pair in zip(["z"] * 20, labels[:20]) for x in pair]
    assert [s for lbl, s in zip(mixed, stratified_split(mixed, (0.7, 0.15, 0.15), seed=1)) if lbl == "a"] == split[:20]


def test_stratified_split_without_a_test_set():
    split = stratified_split(["a"] * 10 + ["b"] * 4, (0.8, 0.2, 0.0), seed=0)
    assert "test" not in split and Counter(split) == {"train": 11, "val": 3}


# --- near-duplicates ---------------------------------------------------------------------------


def painting(seed, size=(160, 120)):
    """A structured picture (smooth random blobs and an edge), so its perceptual hash means something."""
    rng = np.random.default_rng(seed)
    coarse = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)).resize(size, Image.Resampling.BICUBIC)
    a = np.asarray(coarse).copy()
    a[: size[1] // 3, rng.integers(0, size[0]) :] //= 2
    return Image.fromarray(a)


def save(im, path, fmt=None, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    im.save(path, fmt, **kwargs)


def resized_jpeg(im, path, scale=0.5, quality=60):
    w, h = im.size
    save(
        im.resize((max(1, int(w * scale)), max(1, int(h * scale))), Image.Resampling.BICUBIC),
        path,
        "JPEG",
        quality=quality,
    )


def test_perceptual_hash_survives_resizing_re_encoding_and_exif_rotation(tmp_path):
    from corpus.imageio import perceptual_hash, probe
    from corpus.neardup import DEFAULT_BITS, hamming

    originals = [painting(s) for s in range(12)]
    hashes = [perceptual_hash(im) for im in originals]
    assert all(h is not None and len(h) == 16 for h in hashes)
    assert min(hamming(a, b) for i, a in enumerate(hashes) for b in hashes[i + 1 :]) > DEFAULT_BITS
    for k, im in enumerate(originals):
        for scale, quality in ((0.5, 75), (0.3, 50), (2.0, 90)):
            resized_jpeg(im, tmp_path / f"{k}-{scale}.jpg", scale, quality)
            assert hamming(probe(tmp_path / f"{k}-{scale}.jpg", phash=True).phash, hashes[k]) <= DEFAULT_BITS
    # Stored rotated with an EXIF orientation (6: rotate 90 clockwise to show it): hashes as shown.
    exif = Image.Exif()
    exif[0x0112] = 6
    save(originals[0].transpose(Image.Transpose.ROTATE_90), tmp_path / "rotated.jpg", "JPEG", quality=90, exif=exif)
    assert hamming(probe(tmp_path / "rotated.jpg", phash=True).phash, hashes[0]) <= DEFAULT_BITS
    # One colour has no structure to hash: it never matches anything.
    assert perceptual_hash(Image.new("RGB", (40, 30), (10, 20, 30))) is None
    assert probe(tmp_path / "rotated.jpg").phash is None  # only when asked


def brute_force_groups(hashes, max_bits):
    from corpus.neardup import hamming

    n = len(hashes)
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    for i in range(n):
        for j in range(i + 1, n):
            if hashes[i] and hashes[j] and hamming(hashes[i], hashes[j]) <= max_bits:
                parent[find(j)] = find(i)
    roots = Counter(find(i) for i in range(n))
    return {frozenset(i for i in range(n) if find(i) == r) for r, k in roots.items() if k > 1}


def as_sets(groups):
    by = {}
    for i, g in enumerate(groups):
        if g is not None:
            by.setdefault(g, set()).add(i)
    return {frozenset(v) for v in by.values()}


@pytest.mark.parametrize("block_pairs", [1, 7, 1 << 22])
def test_near_duplicate_groups_match_a_brute_force_union_find(block_pairs):
    from corpus.neardup import near_duplicate_groups

    rng = np.random.default_rng(3)
    base = [int(x) for x in rng.integers(0, 2**63, 40, dtype=np.uint64)]
    hashes = [f"{x:016x}" for x in base]
    for k in range(0, 40, 4):  # copies a few bits off, chains of copies, exact repeats
        hashes.append(f"{base[k] ^ 0b1011:016x}")
        hashes.append(f"{base[k] ^ 0b1011 ^ (0b11111 << 50):016x}")  # 9 bits from the original, 5 from the copy
        hashes.append(hashes[k])
    hashes += [None, None, f"{base[1] ^ (1 << 63):016x}"]
    order = rng.permutation(len(hashes))
    hashes = [hashes[i] for i in order]
    for bits in (0, 1, 4, 8, 12):
        groups = near_duplicate_groups(hashes, bits, block_pairs=block_pairs)
        assert as_sets(groups) == (brute_force_groups(hashes, bits) if bits else set())
        numbers = [g for g in groups if g is not None]
        assert sorted(set(numbers)) == list(range(1, len(set(numbers)) + 1))
        assert list(dict.fromkeys(numbers)) == sorted(set(numbers))  # numbered by first member
    assert near_duplicate_groups([], 8) == [] and near_duplicate_groups(["00ff"], 8) == [None]


def test_grouping_twenty_thousand_hashes_is_quick():
    import time

    from corpus.neardup import near_duplicate_groups

    values = np.random.default_rng(0).integers(0, 2**63, 20_000, dtype=np.uint64)
    hashes = [f"{int(x):016x}" for x in values] + [f"{int(values[7]) ^ 0b111:016x}"]
    start = time.perf_counter()
    groups = near_duplicate_groups(hashes, 8)
    assert time.perf_counter() - start < 30  # ~1 s measured on one core: 2 x 10^8 pairs in numpy blocks
    assert as_sets(groups) == {frozenset({7, 20_000})}


def test_split_keeps_every_group_in_one_split():
    labels = ["a"] * 30 + ["b"] * 12 + ["c"] * 5
    groups = [None] * len(labels)
    for g, members in enumerate(
        ([0, 1, 2], [3, 29], [10, 11, 12, 13, 14, 15], [30, 31], [42, 43, 44], [5, 35]), 1
    ):  # the last one mixes labels a and b
        for i in members:
            groups[i] = g
    fractions = (0.6, 0.2, 0.2)
    for seed in range(20):
        split = stratified_split(labels, fractions, seed, groups)
        assert split == stratified_split(labels, fractions, seed, groups)
        for g in set(groups) - {None}:
            assert len({split[i] for i, x in enumerate(groups) if x == g}) == 1, (seed, g)
        counts = Counter(zip(labels, split))
        for lbl in "abc":
            assert counts[lbl, "train"] >= 1 and counts[lbl, "val"] >= 1 and counts[lbl, "test"] >= 1, (seed, lbl)
        assert 4 <= counts["a", "val"] <= 7 and 4 <= counts["a", "test"] <= 7  # targets 6 and 6, in whole groups
    # No groups (or all None) is the plain stratified split, so datasets without near-duplicates keep their split.
    assert stratified_split(labels, fractions, 4, [None] * len(labels)) == stratified_split(labels, fractions, 4)


def test_split_of_a_label_made_of_big_groups():
    # 7 images of one label in 3 units (3 + 3 + 1): val and test get one unit each, train at least one.
    labels = ["a"] * 7 + ["b"] * 3
    groups = [1, 1, 1, 2, 2, 2, None, None, None, None]
    for seed in range(10):
        split = stratified_split(labels, (0.7, 0.15, 0.15), seed, groups)
        units = {"g1": split[0], "g2": split[3], "s": split[6]}
        assert sorted(units.values()) == ["test", "train", "val"], (seed, units)
        assert len(set(split[:3])) == 1 and len(set(split[3:6])) == 1


def test_ingest_groups_a_resized_copy_and_stores_the_hash(tmp_path):
    for label, seeds in (("Anna", range(0, 8)), ("Bert", range(8, 16))):
        for s in seeds:
            save(painting(s), tmp_path / label / f"{s}.png")
    resized_jpeg(painting(2), tmp_path / "Anna" / "2-small.jpg")
    resized_jpeg(
        painting(9), tmp_path / "Anna" / "9-small.jpg", 0.4
    )  # a copy under another label: grouped, not skipped
    out = ingest(tmp_path)
    assert len(out.images) == 18 and out.skipped == [] and out.near_dup_bits == 8
    groups = [[(im.path, im.label) for im in g] for g in out.groups()]
    assert groups == [
        [("Anna/2-small.jpg", "Anna"), ("Anna/2.png", "Anna")],
        [("Anna/9-small.jpg", "Anna"), ("Bert/9.png", "Bert")],
    ]
    copy = next(im for im in out.images if im.path == "Anna/2-small.jpg")
    assert copy.stored_attrs() == {"phash": copy.phash, "near_dup_group": 1}
    split = stratified_split([im.label for im in out.images], (0.5, 0.25, 0.25), 0, [im.group for im in out.images])
    where = {im.path: sp for im, sp in zip(out.images, split)}
    assert where["Anna/2-small.jpg"] == where["Anna/2.png"] and where["Anna/9-small.jpg"] == where["Bert/9.png"]

    assert all(im.group is None and im.phash for im in ingest(tmp_path, near_dup_bits=0).images)
    with pytest.raises(ConfigError, match="--near-dup-bits"):
        ingest(tmp_path, near_dup_bits=40)


def test_a_source_attribute_named_like_ours_is_kept_aside(tmp_path):
    save(painting(0), tmp_path / "a.png")
    save(painting(1), tmp_path / "b.png")
    write_manifest(tmp_path / "manifest.csv", "path,label,phash\na.png,x,mine\nb.png,y,\n")
    stored = ingest(tmp_path, fmt="csv").images[0].stored_attrs()
    assert stored["source_phash"] == "mine" and len(stored["phash"]) == 16
