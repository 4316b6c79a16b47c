"""What the CLI, the workers and the store share: settings, errors, job configs,
artifact paths and the message contract. It imports none of them, so imports run
one way: core <- db <- worker <- orchestrator (tests/unit/test_imports.py).
"""
