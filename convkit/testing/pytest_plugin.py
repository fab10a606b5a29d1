"""pytest fixtures shipped with convkit (registered through the ``pytest11`` entry point)."""
