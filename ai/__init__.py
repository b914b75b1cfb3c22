"""Parallax AI: pure pipelines (file in, files out, a progress callback).

Nothing in this package imports from ``backend``. Modules that need torch import it
lazily so that ``ai.probe`` and ``ai.errors`` stay cheap for the web process.
"""
