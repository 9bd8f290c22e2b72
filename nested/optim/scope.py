"""Which parameters an orthogonalising optimizer (Muon, M3) updates with its own rule (PAPER.md §7.2
note 4; docs/FIDELITY.md "Optimizers as memories").

    groups = scoped_groups(model.named_parameters(), scope="hidden")
    opt = M3(groups, lr=1e-3)        # hidden matrices through M3, the rest through AdamW

Scopes:
- "hidden" (the paper's default, as Muon is used): matrices of hidden layers go through the rule; the
  input embedding, the output head and every tensor with fewer than 2 dims go through AdamW. Newton-Schulz
  is the identity on 1-D gains, and the embedding / head are lookup tables and a classifier, not linear
  maps between hidden states.
- "matrices": every tensor with 2 or more dims through the rule (embedding and head included).
- "all": every tensor through the rule (what M3 did before the scope existed; 1-D tensors then get the raw
  fast momentum, rescaled).
Each group carries `use_ns`: True through the rule, False through the optimizer's auxiliary AdamW.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch

SCOPES = ("hidden", "matrices", "all")
OUTER = ("embed", "head")  # name parts of the input embedding and the output head


def is_outer(name: str) -> bool:
    return any(part in OUTER or part.startswith(OUTER) for part in name.split("."))


def through_rule(name: str, p: torch.Tensor, scope: str) -> bool:
    if scope == "all":
        return True
    if scope == "matrices":
        return p.dim() >= 2
    return p.dim() >= 2 and not is_outer(name)


def scoped_groups(named_params: Iterable[tuple[str, torch.Tensor]], scope: str = "hidden") -> list[dict]:
    """Param groups for Muon / M3: [{"params": through the rule, "use_ns": True}, {"params": the rest,
    "use_ns": False}] (empty groups left out), in the model's parameter order."""
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    rule, rest = [], []
    for name, p in named_params:
        (rule if through_rule(name, p, scope) else rest).append(p)
    return [g for g in ({"params": rule, "use_ns": True}, {"params": rest, "use_ns": False}) if g["params"]]
