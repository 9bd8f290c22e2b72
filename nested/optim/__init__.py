"""Optimizers as associative memories (PAPER.md §1.3, §7): every optimizer here lists its memories."""

from nested.optim.m3 import M3
from nested.optim.memory_form import AdamMemory, MomentumSGD
from nested.optim.memory_view import MemoryInfo, ema_horizon, memory_view
from nested.optim.momentum import DeepMomentum, DeltaMomentum, PreconditionedMomentum
from nested.optim.muon import Muon
from nested.optim.newton_schulz import CUBIC, QUINTIC, newton_schulz
from nested.optim.probe import gradient_stream_probe, memory_half_life
from nested.optim.surfaces import SURFACES, Path, Surface, run_on_surface

OPTIMIZERS = {
    "sgd": lambda ps, lr=0.01: MomentumSGD(ps, lr=lr, momentum=0.0),
    "momentum": lambda ps, lr=0.01: MomentumSGD(ps, lr=lr, momentum=0.9),
    "adam": lambda ps, lr=0.01: AdamMemory(ps, lr=lr),
    "muon": lambda ps, lr=0.01: Muon(ps, lr=lr, weight_decay=0.0, adamw_lr=lr),
    "m3": lambda ps, lr=0.01: M3(ps, lr=lr),
    "delta-momentum": lambda ps, lr=0.01: DeltaMomentum(ps, lr=lr),
    "preconditioned-momentum": lambda ps, lr=0.01: PreconditionedMomentum(ps, lr=lr, preconditioner="rms"),
    "deep-momentum": lambda ps, lr=0.01: DeepMomentum(ps, lr=lr),
}

__all__ = [
    "CUBIC",
    "M3",
    "OPTIMIZERS",
    "QUINTIC",
    "SURFACES",
    "AdamMemory",
    "DeepMomentum",
    "DeltaMomentum",
    "MemoryInfo",
    "MomentumSGD",
    "Muon",
    "Path",
    "PreconditionedMomentum",
    "Surface",
    "ema_horizon",
    "gradient_stream_probe",
    "memory_half_life",
    "memory_view",
    "newton_schulz",
    "run_on_surface",
]
