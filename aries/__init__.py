"""aries: teach a language model to refine its own answers (ARIES, arXiv 2502.05605)."""

__version__ = "0.1.0"


class AriesError(Exception):
    """A user-facing error: the CLI prints its message on one line and exits non-zero."""
