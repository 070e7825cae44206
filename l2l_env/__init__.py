"""L2L environment package: data, priors, metrics and the pseudo-label selection environment."""

__version__ = "0.1.0"


def register_envs() -> None:
    """Register the L2L environments with gymnasium (idempotent). Filled in by the env issue."""
