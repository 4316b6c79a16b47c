"""Near-duplicate images: group perceptual hashes within a few bits of each other.

The same work photographed twice, or one file resized and re-encoded, must not
sit in two splits: a classifier that saw one copy in training "recognises" the
other in the test set. Ingestion hashes every image (a 64-bit pHash, see
``imageio.perceptual_hash``); this module links every two hashes at most
``max_bits`` apart and returns the connected groups (a copy of a copy of a copy
is one group, even when its ends are further apart than the threshold).

Cost: every pair of distinct hashes is compared once, by numpy in blocks of
about four million pairs (XOR, popcount, compare), and each block's links are
merged into the components found so far with scipy's connected components, so
memory stays bounded whatever the data. 20,000 images are 2 x 10^8 pairs: about
a second on one core, next to minutes of decoding.

DEFAULT_BITS = 8 was measured, not guessed (``imageio.perceptual_hash``; pHash
distances are usually even: 32 of the 64 bits lie above the median):
- a resized (0.25 to 0.8 x) and re-encoded (JPEG quality 40 to 75) copy lies 0 to
  4 bits from its original for the 96 real paintings of shared/realdata, 0 to 8
  for 1,200 synthetic 96 px ones (shrunk to 24 px, the worst case);
- among the real paintings, two photographs of one Bosch panel lie 2 bits apart,
  two of another 8, and two near-identical views by Rousseau 10;
- the closest two different paintings lie 18 bits apart among the real ones
  (4,560 pairs) and 10 among the synthetic ones (719,400 pairs; one pair at 10,
  two at 12).
A false group only ties two images to one split; a missed one leaks a work
across splits, so the threshold sits at the generous end of the gap.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np

DEFAULT_BITS = 8
BLOCK_PAIRS = 1 << 22  # pairs compared per numpy block: ~32 MB of XORs

_BYTE_BITS = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def _popcount(x: np.ndarray) -> np.ndarray:
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return _BYTE_BITS[x.view(np.uint8)].reshape(*x.shape, 8).sum(axis=-1, dtype=np.uint8)


def hamming(a: str, b: str) -> int:
    """Bits that differ between two hex hashes."""
    return (int(a, 16) ^ int(b, 16)).bit_count()


def close_pairs(
    values: np.ndarray, max_bits: int, block_pairs: int = BLOCK_PAIRS
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(i, j) index arrays, i < j, of the uint64 ``values`` at most ``max_bits`` apart, block by block."""
    n = len(values)
    rows = max(1, block_pairs // max(n, 1))
    for start in range(0, n, rows):
        block = values[start : start + rows]
        near = _popcount(block[:, None] ^ values[None, start:]) <= max_bits  # (rows, n - start)
        r, c = np.nonzero(near)
        keep = c > r  # column c is value start + c, row r is value start + r: the upper triangle
        if keep.any():
            yield start + r[keep], start + c[keep]


def near_duplicate_groups(
    hashes: Sequence[str | None], max_bits: int = DEFAULT_BITS, block_pairs: int = BLOCK_PAIRS
) -> list[int | None]:
    """Group number (1, 2, ... in order of each group's first member) per hash, None outside any group.

    A group has two members or more. Hashes are hex strings of up to 64 bits; None
    (a flat image, or no hash) is never grouped. ``max_bits`` 0 or less groups nothing.
    """
    out: list[int | None] = [None] * len(hashes)
    if max_bits <= 0:
        return out
    where = [i for i, h in enumerate(hashes) if h is not None]
    if len(where) < 2:
        return out
    values = np.array([int(hashes[i], 16) for i in where], dtype=np.uint64)
    # Identical hashes are one node: the comparisons run over distinct values only.
    distinct, node = np.unique(values, return_inverse=True)
    component = _components(distinct, max_bits, block_pairs)[node.reshape(-1)]
    sizes = np.bincount(component)
    number: dict[int, int] = {}
    for k, i in enumerate(where):
        c = int(component[k])
        if sizes[c] >= 2:
            out[i] = number.setdefault(c, len(number) + 1)
    return out


def _components(values: np.ndarray, max_bits: int, block_pairs: int) -> np.ndarray:
    """Connected-component label per value, linking values at most ``max_bits`` apart."""
    n = len(values)
    root = np.arange(n)  # a representative member per node: the components found so far
    for i, j in close_pairs(values, max_bits, block_pairs):
        from scipy.sparse import coo_matrix
        from scipy.sparse.csgraph import connected_components

        # The components so far as a star per component (node -> its root) plus this block's
        # links: at most n + links edges at a time, however many pairs the whole set has.
        a = np.concatenate([np.arange(n), i])
        b = np.concatenate([root, j])
        graph = coo_matrix((np.ones(len(a), dtype=np.int32), (a, b)), shape=(n, n))
        _, label = connected_components(graph, directed=False)
        _, first = np.unique(label, return_index=True)  # component k's first node
        root = first[label]
    return root
