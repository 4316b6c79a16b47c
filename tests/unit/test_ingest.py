"""Ingestion of the four source layouts, built as fixture folders here."""

import unicodedata
from collections import Counter

import pytest
from PIL import Image

from worker.ml.errors import ConfigError
from worker.ml.ingest import ingest, parse_split, stratified_split


def img(path, color=(10, 200, 30), size=(20, 16)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_imagefolder_with_bad_files(tmp_path):
    for i in range(3):
        img(tmp_path / "Élise" / f"{i}.png", (i * 40, 0, 0))
        img(tmp_path / "Bob" / "sub" / f"{i}.jpg", (0, i * 40, 0))
    (tmp_path / "Bob" / "zero.jpg").write_bytes(b"")
    (tmp_path / "Bob" / ".hidden.png").write_bytes(b"x")
    out = ingest(tmp_path)
    assert Counter(im.label for im in out.images) == {"Élise": 3, "Bob": 3}
    assert [(s.path, "empty" in s.reason) for s in out.skipped] == [("Bob/zero.jpg", True)]


def test_not_a_folder_and_empty(tmp_path):
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ConfigError, match="not a folder"):
        ingest(tmp_path / "f.txt")
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(ConfigError, match="no images"):
        ingest(tmp_path / "empty")


def test_csv_manifest_and_label_column(tmp_path):
    for i in range(4):
        img(tmp_path / "imgs" / f"{i}.png", (i * 50, 0, 0))
    (tmp_path / "manifest.csv").write_text(
        "path,label,period\nimgs/0.png,Rembrandt,baroque\nimgs/1.png,Rembrandt,baroque\n"
        "imgs/2.png,Monet,impressionism\nimgs/3.png,Monet,impressionism\n../escape.png,Monet,x\n", encoding="utf-8")
    out = ingest(tmp_path, fmt="csv")
    assert Counter(im.label for im in out.images) == {"Rembrandt": 2, "Monet": 2}
    assert out.images[0].attrs == {"period": "baroque"}
    assert [s.reason for s in out.skipped] == ["path leaves the dataset folder"]
    by_period = ingest(tmp_path, fmt="csv", label="period")
    assert {im.label for im in by_period.images} == {"baroque", "impressionism"}
    with pytest.raises(ConfigError, match="not a column"):
        ingest(tmp_path, fmt="csv", label="material")


def test_kaggle_layout_merges_the_two_durer_folders(tmp_path):
    (tmp_path / "artists.csv").write_text(
        "id,name,years,genre,nationality,bio,wikipedia,paintings\n"
        "0,Albrecht Dürer,1471 - 1528,Northern Renaissance,German,bio,http://w,2\n"
        "1,Vincent van Gogh,1853 - 1890,Post-Impressionism,Dutch,bio,http://w,2\n", encoding="utf-8")
    base = tmp_path / "images" / "images"
    nfc, nfd = "Albrecht_Dürer", unicodedata.normalize("NFD", "Albrecht_Dürer")
    assert nfc != nfd
    img(base / nfc / f"{nfc}_1.jpg", (200, 0, 0))
    img(base / nfd / f"{nfd}_2.jpg", (0, 0, 200))
    img(base / nfd / f"{nfd}_1.jpg", (200, 0, 0))  # the same painting in both folders
    img(base / "Vincent_van_Gogh" / "Vincent_van_Gogh_1.jpg", (0, 200, 0))
    img(base / "Vincent_van_Gogh" / "Vincent_van_Gogh_2.jpg", (0, 100, 0))
    out = ingest(tmp_path, fmt="kaggle-best-artworks")
    assert Counter(im.label for im in out.images) == {"Albrecht Dürer": 2, "Vincent van Gogh": 2}
    assert len(out.skipped) == 1 and out.skipped[0].reason.startswith("duplicate of")
    assert {im.attrs["nationality"] for im in out.images} == {"German", "Dutch"}
    assert {im.label for im in ingest(tmp_path, fmt="kaggle-best-artworks", label="genre").images} == {
        "Northern Renaissance", "Post-Impressionism"}


RECORD = """<?xml version="1.0" encoding="UTF-8"?>
<record><metadata><oai_dc:dc xmlns:oai_dc="http://www.openarchives.org/OAI/2.0/oai_dc/"
 xmlns:dc="http://purl.org/dc/elements/1.1/">
<dc:creator>{creator}</dc:creator><dc:type>{type}</dc:type><dc:date>{date}</dc:date>
</oai_dc:dc></metadata></record>"""


def test_rijksmuseum_layout(tmp_path):
    works = [("a", "Rembrandt Harmensz. van Rijn", "schilderij", "1642"),
             ("b", "schilder: Rembrandt Harmensz. van Rijn", "prent", "1650"),
             ("c", "anoniem", "schilderij", "1700"),
             ("d", "Johannes Vermeer", "schilderij", "1660")]
    for i, (stem, creator, kind, date) in enumerate(works):
        img(tmp_path / "jpg2" / f"{stem}.jpg", (i * 60, 0, 0))
        (tmp_path / "xml2").mkdir(exist_ok=True)
        (tmp_path / "xml2" / f"{stem}.xml").write_text(RECORD.format(creator=creator, type=kind, date=date), encoding="utf-8")
    img(tmp_path / "jpg2" / "e.jpg")  # no record
    out = ingest(tmp_path, fmt="rijksmuseum")
    assert Counter(im.label for im in out.images) == {"Rembrandt Harmensz. van Rijn": 2, "Johannes Vermeer": 1}
    assert sorted(s.path for s in out.skipped) == ["jpg2/c.jpg", "jpg2/e.jpg"]
    assert {im.attrs["type"] for im in out.images} == {"schilderij", "prent"}
    by_type = ingest(tmp_path, fmt="rijksmuseum", label="type")
    assert Counter(im.label for im in by_type.images) == {"schilderij": 2, "prent": 1}


def test_top_and_min_images(tmp_path):
    for label, n in (("a", 5), ("b", 3), ("c", 3), ("d", 1)):
        for i in range(n):
            img(tmp_path / label / f"{i}.png", (i * 30, len(label), 0))
    assert {im.label for im in ingest(tmp_path, top=2).images} == {"a", "b"}  # b beats c by name
    assert {im.label for im in ingest(tmp_path, min_images=3).images} == {"a", "b", "c"}
    with pytest.raises(ConfigError, match="--top"):
        ingest(tmp_path, top=0)


@pytest.mark.parametrize("text", ["0.5,0.1", "a,b,c", "0.8,0.3,-0.1", "0,0.5,0.5", "0.7,0.2,0.2"])
def test_parse_split_errors(text):
    with pytest.raises(ConfigError, match="--split"):
        parse_split(text)


def test_stratified_split_per_label_and_deterministic():
    labels = ["a"] * 20 + ["b"] * 10 + ["c"] * 3
    split = stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
    counts = Counter(zip(labels, split))
    assert (counts["a", "train"], counts["a", "val"], counts["a", "test"]) == (14, 3, 3)
    assert all(counts[lbl, s] >= 1 for lbl in "abc" for s in ("train", "val", "test"))
    assert split == stratified_split(labels, (0.7, 0.15, 0.15), seed=1)
    assert split != stratified_split(labels, (0.7, 0.15, 0.15), seed=2)
    # another label added in front does not reshuffle label a
    more = ["z"] * 5 + labels
    assert stratified_split(more, (0.7, 0.15, 0.15), seed=1)[5:25] == split[:20]
