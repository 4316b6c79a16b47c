"""Maintenance programs run from the repository root as modules (``python -m scripts.cli_reference``)."""
