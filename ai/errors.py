"""Errors raised by pipelines, classified so a job runner knows whether a retry can help."""


class PipelineError(Exception):
    """Base class. ``retryable`` tells a job runner whether trying again may succeed."""

    retryable = False


class InvalidMediaError(PipelineError):
    """The input itself is bad (corrupt, truncated, wrong type, too large). Never retried."""


class ModelUnavailableError(PipelineError):
    """A model could not be loaded (not cached and no network, bad id). The message says how to fix it."""


class TransientError(PipelineError):
    """Something outside the input failed (out of memory, I/O hiccup); a retry may succeed."""

    retryable = True


class Cancelled(Exception):
    """Raised from a progress callback to stop a pipeline early. Not a failure."""
