"""The errors our own checks raise, each naming the file or key at fault.

Kept free of torch and numpy: every step's command line (``steps/_cli.py``) reports them as
one line, and a step that never touches a network should not import one to do so.
"""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing data; the message names the file (full path) and the problem."""


class CamFileError(ValueError):
    """A CAM file with missing keys or inconsistent shapes; the message names the file."""


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit; the message names the file."""


class NonFiniteLossError(ValueError):
    """A loss term became NaN or infinite: the training stops before the step that would spread it."""


class WeightsNotFoundError(FileNotFoundError):
    """ImageNet weights are needed but absent; the message says which file to put where."""
