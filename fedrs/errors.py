"""Errors that fedrs reports to the user as one readable line (no traceback) from the CLI.

Each message names the problem and the fix.
"""


class FedrsError(Exception):
    """Base class for user-facing errors."""


class DataError(FedrsError):
    """Missing, malformed or corrupt dataset input."""


class BackboneError(FedrsError):
    """A backbone that cannot be created or loaded (unknown name, missing weights, offline hub)."""
