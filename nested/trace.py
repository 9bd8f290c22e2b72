"""A Trace: everything a streamed run did, token by token (DESIGN.md §2), for one batch item.

- `updates`: one event per parameter update at any level: token (the last token the update covers),
  layer, component (CMS levels are named "cms[l]"), period (tokens per update), norm of the change;
- per token and layer: the write learning rate `eta`, the retention `alpha` (the factor the memory is
  multiplied by), surprise (inner loss), and
  `inner_clipped`, the fraction of heads whose inner gradient hit the clip, per memory;
- bounded ring buffer of memory-matrix snapshots per layer: {memory name: its first-layer matrix, head 0};
- per token: top-k next-token predictions with probabilities, and the loss once the target is known;
- `meta["gates"]`: per layer, what its mixer's eta / alpha rows hold ((title, symbol): Hope η_t and α_t,
  Titans θ_t and 1 − α_t, DeltaNet β_t and its decay), so no reader has to know the model.

Saved as one .npz (arrays + a JSON header); nothing is pickled.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAX_TRACE_BYTES = 256 * 2**20  # uncompressed; a 4,096-token run with full snapshots is ~20 MB
# what the "eta" / "alpha" rows hold in Hope's self-modifying memories, as (title, symbol): the labels a
# trace saved before mixers named their rows gets (nested.selfmod uses them as its own)
HOPE_ROWS = {"eta": ("learning rate η_t", "η"), "alpha": ("retention α_t", "α")}
TRACE_VERSION = 2  # 2 added inner_clipped and UpdateEvent.clipped; version 1 files still load


@dataclass
class UpdateEvent:
    token: int
    layer: int
    component: str
    period: int
    norm: float = float("nan")
    clipped: bool | None = None  # CMS updates: the clip on the summed update fired

    def to_dict(self) -> dict:
        return {"token": self.token, "layer": self.layer, "component": self.component,
                "period": self.period, "norm": self.norm, "clipped": self.clipped}  # fmt: skip


@dataclass
class Trace:
    n_layers: int
    top_k: int = 5
    max_snapshots: int = 256
    tokens: list[int] = field(default_factory=list)
    updates: list[UpdateEvent] = field(default_factory=list)
    eta: list[np.ndarray] = field(default_factory=list)  # per token: (n_layers, heads)
    alpha: list[np.ndarray] = field(default_factory=list)
    surprise: list[np.ndarray] = field(default_factory=list)
    inner_clipped: list[np.ndarray] = field(default_factory=list)  # per token: (n_layers, memories)
    topk_ids: list[np.ndarray] = field(default_factory=list)
    topk_probs: list[np.ndarray] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # NaN until the next token is seen
    snapshots: dict[int, list[tuple[int, dict[str, np.ndarray]]]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)

    # -- queries the app uses ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.tokens)

    def array(self, name: str) -> np.ndarray:
        """eta / alpha / surprise as (T, n_layers, heads), or loss as (T,)."""
        if name == "loss":
            return np.asarray(self.loss, dtype=np.float32)
        rows = getattr(self, name)
        if not rows:
            return np.zeros((0, self.n_layers, 1), np.float32)
        return np.stack(rows).astype(np.float32)

    def gate_labels(self, layer: int) -> dict[str, tuple[str, str]]:
        """What `layer`'s eta / alpha rows hold, as (title, symbol); Hope's names for traces saved without."""
        gates = self.meta.get("gates")
        got = gates[layer] if isinstance(gates, list) and 0 <= layer < len(gates) else None
        got = got if isinstance(got, dict) else {}

        def label(value, default):  # a loaded file may hold anything here: only two strings are a label
            ok = isinstance(value, list | tuple) and len(value) == 2 and all(isinstance(x, str) for x in value)
            return tuple(value) if ok else default

        return {k: label(got.get(k), v) for k, v in HOPE_ROWS.items()}

    def updates_for(self, component: str | None = None, layer: int | None = None) -> list[UpdateEvent]:
        return [
            e
            for e in self.updates
            if (component is None or e.component == component) and (layer is None or e.layer == layer)
        ]

    def ticks(self, layer: int, component: str, upto: int | None = None) -> list[int]:
        """The tokens at which `component` of `layer` updated ("cms" matches every CMS level and its
        resets; "cms[1]" one level), up to token `upto` inclusive."""

        def match(c: str) -> bool:
            return c == component or (component == "cms" and c.startswith("cms["))

        return [e.token for e in self.updates if e.layer == layer and match(e.component)
                and (upto is None or e.token <= upto)]  # fmt: skip

    def clip_rates(self) -> dict[str, float]:
        """How often the clips fired: per layer and memory, the fraction of (token, head) inner
        gradients clipped; per layer and CMS level, the fraction of updates clipped."""
        out: dict[str, float] = {}
        clipped = self.array("inner_clipped")
        for layer in range(self.n_layers):
            for m in range(clipped.shape[-1] if len(clipped) else 0):
                col = clipped[:, layer, m]
                if np.isfinite(col).any():
                    out[f"layer {layer} memory {m}"] = float(np.nanmean(col))
        events: dict[str, list[bool]] = {}
        for e in self.updates:
            if e.clipped is not None:
                events.setdefault(f"layer {e.layer} {e.component}", []).append(bool(e.clipped))
        out.update({k: float(np.mean(v)) for k, v in events.items()})
        return out

    def snapshot_at(self, layer: int, token: int) -> dict[str, np.ndarray] | None:
        """The memory matrices of `layer` right after `token` (None when outside the ring buffer)."""
        for t, mats in reversed(self.snapshots.get(layer, [])):
            if t == token:
                return mats
            if t < token:
                return None
        return None

    def head(self, n: int) -> Trace:
        """The trace a stream of only its first n tokens would have recorded (a new Trace; arrays are
        shared). A CMS update (period > 1) learns from next-token losses, so one that closes on the last
        kept token needed the token after it: a stream cut there has not made it yet."""
        n = min(n, len(self))
        start = self.meta.get("start", 0)
        last = start + n - 1
        return Trace(n_layers=self.n_layers, top_k=self.top_k, max_snapshots=self.max_snapshots,
                     tokens=self.tokens[:n], updates=[e for e in self.updates if e.token < last or (e.token == last and e.period == 1)],
                     eta=self.eta[:n], alpha=self.alpha[:n], surprise=self.surprise[:n],
                     inner_clipped=self.inner_clipped[:n], topk_ids=self.topk_ids[:n],
                     topk_probs=self.topk_probs[:n], loss=self.loss[: max(n - 1, 0)] + [float("nan")] * min(n, 1),
                     snapshots={k: [(t, m) for t, m in v if t < start + n] for k, v in self.snapshots.items()},
                     meta=dict(self.meta))  # fmt: skip

    def extend(self, other: Trace) -> Trace:
        """Concatenate a later trace of the same stream (tokens are already absolute)."""
        if self.loss and other.tokens and np.isnan(self.loss[-1]) and other.meta.get("prev_loss") is not None:
            self.loss[-1] = other.meta["prev_loss"]
        self.tokens += other.tokens
        self.updates += other.updates
        for name in ("eta", "alpha", "surprise", "inner_clipped", "topk_ids", "topk_probs", "loss"):
            getattr(self, name).extend(getattr(other, name))
        for layer, snaps in other.snapshots.items():
            buf = self.snapshots.setdefault(layer, [])
            buf.extend(snaps)
            del buf[: max(0, len(buf) - self.max_snapshots)]
        return self

    # -- serialisation -------------------------------------------------------------------------
    def save(self, path: str | Path | BinaryIO, snapshot_dtype: str = "float32") -> Path | BinaryIO:
        """Write one .npz (to a path or an open binary file). `snapshot_dtype="float16"` halves the
        snapshots, at the cost of ~3 significant digits (too few for late, tiny memory changes)."""
        header = {
            "version": TRACE_VERSION,
            "n_layers": self.n_layers,
            "top_k": self.top_k,
            "max_snapshots": self.max_snapshots,
            "updates": [e.to_dict() for e in self.updates],
            "snapshot_tokens": {str(k): [t for t, _ in v] for k, v in self.snapshots.items()},
            "snapshot_names": {str(k): sorted(v[0][1]) if v else [] for k, v in self.snapshots.items()},
            "meta": self.meta,
        }
        arrays = {
            "header": np.array(json.dumps(header)),
            "tokens": np.asarray(self.tokens, dtype=np.int64),
            "loss": self.array("loss"),
        }
        for name in ("eta", "alpha", "surprise", "inner_clipped"):
            arrays[name] = self.array(name)
        k = self.top_k
        arrays["topk_ids"] = np.stack(self.topk_ids) if self.topk_ids else np.zeros((0, k), np.int64)
        arrays["topk_probs"] = np.stack(self.topk_probs) if self.topk_probs else np.zeros((0, k), np.float32)
        for layer, snaps in self.snapshots.items():
            for name in sorted(snaps[0][1]) if snaps else []:
                arrays[f"snap_{layer}_{name}"] = np.stack([m[name] for _, m in snaps]).astype(snapshot_dtype)
        if hasattr(path, "write"):
            np.savez_compressed(path, **arrays)
            return path
        path = Path(path)
        with open(path, "wb") as f:
            np.savez_compressed(f, **arrays)
        return path

    @classmethod
    def load(cls, path: str | Path | BinaryIO) -> Trace:
        """Read a saved trace (a path or an open binary file). Anything that is not a valid trace raises
        ValueError with the reason; nothing is unpickled, and an archive that would inflate past
        MAX_TRACE_BYTES is refused from its directory before any array is read."""
        _check_archive_size(path)
        try:
            with np.load(path, allow_pickle=False) as z:
                header = json.loads(str(z["header"]))
                if header.get("version") not in (1, TRACE_VERSION):
                    raise ValueError(f"trace version {header.get('version')} is not 1 or {TRACE_VERSION}")
                tr = cls(n_layers=int(header["n_layers"]), top_k=int(header["top_k"]),
                         max_snapshots=int(header["max_snapshots"]), meta=header.get("meta", {}))  # fmt: skip
                tr.tokens = [int(t) for t in z["tokens"]]
                tr.loss = [float(x) for x in z["loss"]]
                for name in ("eta", "alpha", "surprise"):
                    setattr(tr, name, list(z[name]))
                n_tok = len(tr.tokens)
                tr.inner_clipped = list(z["inner_clipped"]) if "inner_clipped" in z.files else \
                    list(np.full((n_tok, tr.n_layers, 1), np.nan, np.float32))  # fmt: skip
                tr.topk_ids, tr.topk_probs = list(z["topk_ids"]), list(z["topk_probs"])
                tr.updates = [UpdateEvent(**e) for e in header["updates"]]
                for layer, toks in header["snapshot_tokens"].items():
                    names = header["snapshot_names"][layer]
                    mats = {n: z[f"snap_{layer}_{n}"].astype(np.float32) for n in names}
                    tr.snapshots[int(layer)] = [(t, {n: mats[n][i] for n in names}) for i, t in enumerate(toks)]
        except Exception as exc:  # zip, npz, JSON, key, type and shape errors all mean "not a trace"
            raise ValueError(f"not a valid trace file ({type(exc).__name__}: {exc})") from exc
        n = len(tr.tokens)
        if not all(
            len(getattr(tr, a)) == n
            for a in ("eta", "alpha", "surprise", "inner_clipped", "loss", "topk_ids", "topk_probs")
        ):
            raise ValueError("not a valid trace file (per-token arrays disagree in length)")
        shapes_ok = (
            all(np.ndim(r) == 2 and len(r) == tr.n_layers for a in ("eta", "alpha", "surprise", "inner_clipped")
                for r in getattr(tr, a))
            and all(np.shape(r) == (tr.top_k,) for a in ("topk_ids", "topk_probs") for r in getattr(tr, a))
            and all(0 <= k < tr.n_layers and all(np.ndim(m) == 2 for _, ms in v for m in ms.values())
                    for k, v in tr.snapshots.items())
            and isinstance(tr.meta, dict)
            and type(tr.meta.get("start", 0)) is int  # readers add it to token indices
        )  # fmt: skip
        if not shapes_ok:
            raise ValueError("not a valid trace file (arrays have the wrong shapes, or the header is malformed)")
        return tr


def _check_archive_size(path) -> None:
    """Refuse a zip whose members declare more than MAX_TRACE_BYTES (a small file can inflate to
    gigabytes); zipfile never reads past a member's declared size, so the directory bounds the memory."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as zf:
            total = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise ValueError(f"not a valid trace file ({type(exc).__name__}: {exc})") from exc
    finally:
        if hasattr(path, "seek"):
            path.seek(0)
    if total > MAX_TRACE_BYTES:
        raise ValueError(f"not a valid trace file: it would inflate to {total / 2**20:,.0f} MB "
                         f"(at most {MAX_TRACE_BYTES / 2**20:,.0f} MB)")  # fmt: skip
