"""Planning, submitting, watching and steering jobs.

Planning is pure (``gridspec`` expands a grid, ``pairs`` chooses a style batch's pairs); ``submit`` commits the
rows and sends the jobs; ``progress`` watches them, ``control`` resumes, cancels and retries them; ``lookups``
finds what a command's argument names and ``weights`` resolves ``--weights`` before anything is submitted.
"""
