"""Nested Learning Lab: the library. Never imports streamlit.

import nested
model = nested.build_model("hope", vocab_size=256, d_model=64, n_layers=2, seed=0)
logits = model(tokens)                       # (B, T) -> (B, T, V), chunk-parallel
run = model.stream(tokens, state=None)       # the same function token by token, with a Trace
nested.levels(model)                         # the nest, fastest to slowest
"""

from nested.bytes import decode_token, encode_bytes, encode_text
from nested.checkpoint import CHECKPOINTS, load, save
from nested.compile import CompiledModel, compile_model
from nested.config import ModelConfig
from nested.device import pick_device
from nested.errors import CheckpointError, NestedError, NonFiniteMemoryError
from nested.freeze import Freeze
from nested.levels import Level, levels
from nested.model import NestedLM
from nested.registry import DESCRIPTIONS, MODELS, build_model, make_config, model_from_config
from nested.state import StreamResult, StreamState
from nested.trace import Trace, UpdateEvent

__version__ = "0.1.0"

__all__ = [
    "DESCRIPTIONS",
    "MODELS",
    "CHECKPOINTS",
    "CheckpointError",
    "CompiledModel",
    "Freeze",
    "Level",
    "ModelConfig",
    "NestedError",
    "NestedLM",
    "NonFiniteMemoryError",
    "StreamResult",
    "StreamState",
    "Trace",
    "UpdateEvent",
    "build_model",
    "decode_token",
    "encode_bytes",
    "encode_text",
    "compile_model",
    "levels",
    "load",
    "make_config",
    "model_from_config",
    "pick_device",
    "save",
]
