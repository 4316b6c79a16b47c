"""Speed benchmarks against a baseline: each runs from the repository root as ``python -m bench.NAME`` and keeps
its figures in ``bench/results/`` (``bench/gpu.sh`` runs every GPU figure at once). Checks of the method on real
paintings are ``checks/``'s concern.
"""
