"""Checkpoints: safetensors weights + JSON config and metadata. Nothing is ever unpickled.

A model checkpoint is a directory:
    model.safetensors   the state dict (tensors only)
    config.json         {"format": "nested-checkpoint", "version": 1, "config": {...}, "meta": {...}}

`load` validates everything and raises CheckpointError with a clear message for a missing, truncated,
corrupt, pickled or mismatched file. Optimizer states are flattened the same way (tensors to safetensors,
everything else to JSON) for exact training resume.
"""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from nested.config import ModelConfig
from nested.errors import CheckpointError

ROOT = Path(__file__).resolve().parent.parent
CHECKPOINTS = ROOT / "assets" / "checkpoints"  # the shipped models (cards: nested/cards.py)

# Config fields added after checkpoints were written, with the value those checkpoints were trained
# under (a missing field must not silently change what a shipped model computes).
_TRAINED_UNDER = {"cms_grad": "segment"}

FORMAT = "nested-checkpoint"
VERSION = 1
WEIGHTS, CONFIG = "model.safetensors", "config.json"


@contextlib.contextmanager
def atomic_dir(path: Path, keep_others: bool = False) -> Iterator[Path]:
    """Write a checkpoint directory all or nothing: the caller fills the yielded sibling directory, which
    replaces `path` only once the block ends; on any failure (a full disk, a crash) it is removed and the
    old `path` stands. `keep_others`: files already in `path` that the block did not write are carried over."""
    tmp = path.with_name(path.name + ".partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        tmp.mkdir(parents=True)
        yield tmp
        for extra in path.glob("*") if keep_others and path.is_dir() else ():
            if not (tmp / extra.name).exists():
                shutil.copy2(extra, tmp / extra.name) if extra.is_file() else shutil.copytree(extra, tmp / extra.name)
        if path.exists():
            old = path.with_name(path.name + ".old")
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        else:
            tmp.rename(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_model(model, path: Path, meta: dict | None = None) -> None:
    """The model's two files into the existing directory `path` (not atomic: see `save`, `atomic_dir`)."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(tensors, str(path / WEIGHTS), metadata={"format": FORMAT})
    doc = {"format": FORMAT, "version": VERSION, "config": model.cfg.to_dict(), "meta": meta or {}}
    (path / CONFIG).write_text(json.dumps(doc, indent=2, sort_keys=True))


def save(model, path: str | Path, meta: dict | None = None) -> Path:
    """Write `model` (a NestedLM) to the directory `path`, atomically (`atomic_dir`): a full disk or a crash
    never leaves a half checkpoint where a good one was. Other files in the directory (a card) are kept."""
    path = Path(path)
    with atomic_dir(path, keep_others=True) as tmp:
        write_model(model, tmp, meta)
    return path


def read_config(path: str | Path) -> dict:
    """The parsed config.json of a checkpoint directory, validated."""
    path = Path(path)
    if not path.is_dir():
        raise CheckpointError(f"no checkpoint directory at {path}")
    cfg_file = path / CONFIG
    if not cfg_file.is_file():
        raise CheckpointError(f"{path} has no {CONFIG}")
    try:
        doc = json.loads(cfg_file.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{cfg_file} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{cfg_file} is not a nested checkpoint config (format {doc.get('format')!r})")
    if doc.get("version") != VERSION:
        raise CheckpointError(f"{cfg_file} has version {doc.get('version')!r}; this library reads {VERSION}")
    return doc


def read_tensors(file: Path) -> dict[str, torch.Tensor]:
    if not file.is_file():
        raise CheckpointError(f"missing weights file {file}")
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise CheckpointError(
            f"{file} is not a valid safetensors file (truncated, corrupt or pickled?): {exc}"
        ) from exc


def load(path: str | Path, device: str | torch.device | None = "cpu"):
    """Load a checkpoint directory into a new model. Validates config keys, tensor names and shapes."""
    from nested.registry import model_from_config

    path = Path(path)
    doc = read_config(path)
    try:
        cfg = ModelConfig.from_dict({**_TRAINED_UNDER, **doc["config"]})
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{path / CONFIG}: bad model config ({exc})") from exc
    tensors = read_tensors(path / WEIGHTS)
    model = model_from_config(cfg, device="cpu")
    expected = model.state_dict()
    missing = sorted(set(expected) - set(tensors))
    unexpected = sorted(set(tensors) - set(expected))
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: weights do not match the config (missing {missing[:5]}, unexpected {unexpected[:5]})"
        )
    wrong = [
        f"{k}: {tuple(tensors[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if tensors[k].shape != v.shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: tensor shapes do not match the config: {wrong[:5]}")
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:
        raise CheckpointError(f"{path}: non-finite values in {bad[:5]}")
    model.load_state_dict({k: tensors[k].to(expected[k].dtype) for k in expected})
    model.checkpoint_meta = doc.get("meta", {})
    return model.to(device) if device is not None else model


# -- optimizer state without pickle ----------------------------------------------------------------


def _encode(obj, tensors: dict, prefix: str):
    if torch.is_tensor(obj):
        tensors[prefix] = obj.detach().cpu().contiguous()
        return {"__tensor__": prefix}
    if isinstance(obj, torch.dtype):
        return {"__dtype__": str(obj).removeprefix("torch.")}
    if isinstance(obj, dict):
        return {"__dict__": [[_encode(k, tensors, f"{prefix}.k{i}"), _encode(v, tensors, f"{prefix}.{i}")]
                             for i, (k, v) in enumerate(obj.items())]}  # fmt: skip
    if isinstance(obj, tuple):
        return {"__tuple__": [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]}
    if isinstance(obj, list):
        return [_encode(v, tensors, f"{prefix}.{i}") for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise CheckpointError(f"cannot store a {type(obj).__name__} in a checkpoint ({prefix})")


def _decode(obj, tensors: dict):
    if isinstance(obj, dict):
        if "__tensor__" in obj:
            return tensors[obj["__tensor__"]]
        if "__dtype__" in obj:
            return getattr(torch, obj["__dtype__"])
        if "__tuple__" in obj:
            return tuple(_decode(v, tensors) for v in obj["__tuple__"])
        if "__dict__" in obj:
            return {_decode(k, tensors): _decode(v, tensors) for k, v in obj["__dict__"]}
    if isinstance(obj, list):
        return [_decode(v, tensors) for v in obj]
    return obj


def save_state(obj, path: Path, name: str) -> None:
    """Any nest of dicts/lists/tuples/tensors/scalars -> name.safetensors + name.json."""
    tensors: dict = {}
    doc = _encode(obj, tensors, "s")
    save_file(tensors, str(path / f"{name}.safetensors"))
    (path / f"{name}.json").write_text(json.dumps(doc))


def load_state(path: Path, name: str):
    try:
        doc = json.loads((path / f"{name}.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path / (name + '.json')} is missing or not JSON ({exc})") from exc
    return _decode(doc, read_tensors(path / f"{name}.safetensors"))
