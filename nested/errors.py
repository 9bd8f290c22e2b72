"""Typed errors the app and CLI catch and show as clear messages."""


class NestedError(Exception):
    """Base class for every error this library raises on purpose."""


class NonFiniteMemoryError(NestedError, FloatingPointError):
    """An inner memory diverged (NaN or inf). Raised instead of returning NaN logits (DESIGN.md §7)."""

    def __init__(self, layer: int, memory: str):
        self.layer, self.memory = layer, memory
        super().__init__(
            f"inner memory diverged: layer {layer}, memory {memory!r} is not finite. "
            "Lower the inner learning rate (eta_scale / cms_lr) or the inner clip, or reset the state."
        )


class CheckpointError(NestedError, ValueError):
    """A checkpoint file is missing, truncated, corrupt, or does not match its config."""
