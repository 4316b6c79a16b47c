"""Checks of the method on real paintings: does the attribution study answer what it claims to?

Each module runs from the repository root as ``python -m checks.NAME`` and keeps its figures in
``checks/results/``: ``attribution_real`` (the whole study on real weights and paintings), ``converge``
(do the answers settle as the optimiser runs longer), ``agree`` (do two optimisers or two starts give the
same answers), ``settle`` (are a batch's answers at half the steps its final ones), ``dose`` (the dose's
effect on real pairs). Speed against a baseline is ``bench/``'s concern.
"""
