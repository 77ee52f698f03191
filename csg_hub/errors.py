"""The errors csg-hub raises for inputs it refuses."""


class CheckpointError(OSError):
    """A checkpoint that does not fit its config, or cannot be read."""
