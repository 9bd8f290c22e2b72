"""Freezing or scaling a level for one run: a spec type that round-trips to a string (for URLs).

    spec = nested.Freeze.parse("layer 0 memories, layer 1 cms[0]")   # eta -> 0 for those levels
    spec = nested.Freeze.parse(["layer 1 cms[1]=0.5"])                # half the level's learning rate
    state = model.init_state(1, freeze=spec)
    str(spec) == "layer 0 memories, layer 1 cms[0]"

"memories" scales the write strength of a layer's in-context memories (Hope: eta_t of every memory;
Titans: theta_t; DeltaNet: beta_t): 0 stops the writes but not the decay (M <- alpha M, Eq. 88).
"cms[l]" scales level l's learning rate in Eq. 71: 0 keeps the level bit-for-bit fixed.
A spec parsed from text (a URL) takes gains >= 0 only; a Freeze built in code may hold a negative gain,
which flips the sign of the writes (the recall lab's "ascent" switch, nested.recall_lab).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

_ITEM = re.compile(r"^layer (\d{1,4}) (memories|cms\[(\d{1,3})\])(?:=(.+))?$")


@dataclass(frozen=True)
class Freeze:
    gains: tuple[tuple[str, float], ...] = ()  # (name, gain), one per named level, in the given order

    @classmethod
    def parse(cls, spec: Freeze | str | Iterable[str] | None, model=None) -> Freeze:
        """A Freeze from its string ("a, b"), a list of names, or a Freeze. With `model`, every name
        must be one of `Freeze.options(model)`. Raises ValueError naming the bad item."""
        if spec is None:
            return cls()
        if isinstance(spec, Freeze):  # built in code: names are checked, and a negative gain is allowed
            allowed = set(cls.options(model)) if model is not None else None
            for name, gain in spec.gains:
                if not _ITEM.match(name) or (allowed is not None and name not in allowed):
                    raise ValueError(f"this model has no level {name!r} to freeze; choose from {sorted(allowed or [])}")
                if not math.isfinite(gain):
                    raise ValueError(f"the gain of {name!r} must be finite, got {gain}")
            return spec
        if isinstance(spec, str):
            items = [s.strip() for s in spec.split(",") if s.strip()]
        else:
            items = [str(s).strip() for s in spec]
        allowed = set(cls.options(model)) if model is not None else None
        gains: dict[str, float] = {}
        for item in items:
            m = _ITEM.match(item)
            if not m:
                raise ValueError(f"cannot read freeze item {item!r}: write 'layer N memories' or 'layer N cms[L]'")
            name = item.split("=")[0]
            if allowed is not None and name not in allowed:
                raise ValueError(f"this model has no level {name!r} to freeze; choose from {sorted(allowed)}")
            try:
                gain = 0.0 if m.group(4) is None else float(m.group(4))
            except ValueError:
                raise ValueError(f"freeze item {item!r}: the gain after '=' must be a number") from None
            if not math.isfinite(gain) or gain < 0:
                raise ValueError(f"freeze item {item!r}: the gain must be a finite number >= 0")
            gains[name] = gain
        return cls(tuple(gains.items()))

    @staticmethod
    def options(model) -> list[str]:
        """Every level of `model` a run can freeze: each layer's in-context memories, each CMS level."""
        out = []
        for i, blk in enumerate(model.blocks):
            if blk.mixer.writable:
                out.append(f"layer {i} memories")
            out += [f"layer {i} cms[{lv}]" for lv in range(getattr(blk.ffn, "n_levels", 0))]
        return out

    def names(self) -> list[str]:
        return [n if g == 0.0 else f"{n}={g:g}" for n, g in self.gains]

    def __str__(self) -> str:
        return ", ".join(self.names())

    def __bool__(self) -> bool:
        return bool(self.gains)

    def gain(self, name: str) -> float:
        return dict(self.gains).get(name, 1.0)

    def memory_gain(self, layer: int) -> float:
        return self.gain(f"layer {layer} memories")

    def cms_gains(self, layer: int, n_levels: int) -> tuple[float, ...]:
        return tuple(self.gain(f"layer {layer} cms[{lv}]") for lv in range(n_levels))


def parse_level(name: str, model=None) -> tuple[int, int | None]:
    """A level's name as (layer, CMS level), the level None for "layer i memories". With `model`, the
    name must be one of `Freeze.options(model)`."""
    m = _ITEM.match(name)
    if not m or m.group(4) is not None:
        raise ValueError(f"cannot read level {name!r}: write 'layer N memories' or 'layer N cms[L]'")
    if model is not None and name not in Freeze.options(model):
        raise ValueError(f"this model has no level {name!r}; choose from {Freeze.options(model)}")
    return int(m.group(1)), None if m.group(3) is None else int(m.group(3))
