"""Which token mixer a configuration names (DESIGN.md §2): the layer before each block's FFN or CMS chain."""

from __future__ import annotations

from torch import nn

from nested.attention import Attention
from nested.config import ModelConfig
from nested.deltanet import DeltaNetMixer
from nested.selfmod import SelfModifyingTitans
from nested.titans import TitansMemory


def make_mixer(cfg: ModelConfig) -> nn.Module:
    if cfg.mixer == "selfmod":
        return SelfModifyingTitans(cfg)
    if cfg.mixer == "attention":
        return Attention(cfg)
    if cfg.mixer == "titans":
        return TitansMemory(cfg)
    if cfg.mixer == "deltanet":
        return DeltaNetMixer(cfg, rule=cfg.extra.get("rule", "delta"))
    if cfg.mixer == "linear":
        return DeltaNetMixer(cfg, rule="hebbian")
    raise ValueError(f"unknown mixer {cfg.mixer!r}")
