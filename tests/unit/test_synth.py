import numpy as np
from PIL import Image

from worker.ml.synth import write_synthetic


def test_synthetic_artists_are_distinct_and_deterministic(tmp_path):
    names = write_synthetic(tmp_path / "a", artists=4, per_artist=5, seed=3, size=48)
    again = write_synthetic(tmp_path / "b", artists=4, per_artist=5, seed=3, size=48)
    assert names == again and any(not n.isascii() for n in names)
    sizes, means = set(), {}
    for n in names:
        files = sorted((tmp_path / "a" / n).iterdir())
        assert len(files) == 5
        assert files[0].read_bytes() == (tmp_path / "b" / n / files[0].name).read_bytes()
        ims = [np.asarray(Image.open(f)) for f in files]
        sizes |= {im.shape[:2] for im in ims}
        means[n] = np.mean([im.reshape(-1, 3).mean(0) for im in ims], axis=0)
    assert len(sizes) > 3  # varied sizes and aspect ratios
    gaps = [np.abs(means[a] - means[b]).max() for i, a in enumerate(names) for b in names[i + 1:]]
    assert min(gaps) > 5  # every pair of artists differs in colour
