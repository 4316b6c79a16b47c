"""The image corpus: reading and probing image files, ingestion (manifests, labels,
splits, near-duplicates) and synthetic paintings. Pure Python, PIL and numpy; no
torch, no database: the CLI ingests with it and the workers decode with it.
"""
