"""One dataclass configures every model of the library (karpathy-style: flat, explicit, serialisable).

Each switch that settles an ambiguity of PAPER.md §11 is named after it; docs/FIDELITY.md says which
reading is the default and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields


@dataclass
class ModelConfig:
    name: str = "hope"  # key of nested.MODELS
    mixer: str = "selfmod"  # selfmod | attention | titans | deltanet | linear
    ffn: str = "cms"  # cms | mlp
    vocab_size: int = 256  # byte-level by default
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 1
    mlp_mult: int = 4  # FFN hidden = mlp_mult * d_model (split over CMS levels for matched size)
    seed: int = 0

    # --- self-modifying Titans (PAPER.md §4) and Titans (§3) memories
    chunk_size: int = 16  # tokens per chunk of M_memory (Fig. 5: 16)
    proj_chunk_size: int | None = None  # chunk of M_k, M_v, M_q, M_eta, M_alpha; None = chunk_size
    mem_mult: int = 1  # hidden width of each 2-layer residual MLP memory = mem_mult * head dim
    conv_width: int = 4  # causal depthwise conv on q, k, v (§6: window 4)
    inner_objective: str = "l2"  # l2 (Eq. 93) | dot (Eq. 92)
    eq92_sign: str = "corrected"  # corrected (+eta v k^T, descent) | printed (as printed, ascent)
    precondition: bool = True  # DGD term (alpha I - eta k k^T); False = plain GD (Table 6 "w/o DGD")
    momentum: float = 0.0  # beta of S_t = beta S_{t-1} + grad (Table 6 "momentum"); 0 = off
    adaptive_q: bool = False  # q = M_q(x) (adaptive) or x W_q (fixed, "the only non-adaptive projection")
    adaptive_k: bool = True  # k = M_k(x) (a self-modifying memory) or x W_k (Table 6: "moved to the lowest level")
    adaptive_v: bool = True  # v = M_v(x) or x W_v (Table 6's largest drop)
    stopgrad_targets: bool = False  # True: the outer loss does not backprop through v_hat = M(v)
    eta_scale: float = 1.0  # eta_t = eta_scale * sigmoid(.) (scalar head per head, §11.2b)
    eta_init_bias: float = -4.0  # eta_t starts near 0.018: the inner clip a guard (bench/stability_study.py)
    alpha_init_bias: float = 5.0  # alpha_t = sigmoid(.) starts near 0.993: slow forgetting
    inner_steps: int = 1  # inner GD steps per token (each with the token's gradient; the recall lab's switch)
    inner_update: str = "gd"  # gd (Eq. 88's step) | normalized (each token's inner gradient scaled to norm 1)
    inner_clip: float = 10.0  # per-token inner gradient norm clip (DESIGN.md §7): a guard
    read_after_write: bool = False  # Hope reads M_{t-1}(q_t) (§4.2); Titans' notation reads M_t
    forget_gate: bool = True  # alpha_t from the model; False: alpha_t = 1, nothing forgotten (E4's "no alpha")
    titans_gates: str = "data"  # Titans' gates from x_t (data) or learned constants (static: E4's model 1)
    titans_max_lr: float = 0.1  # theta_t = sigmoid(.) * max_lr (lucidrains' parameterisation; 0.5 fails to train)

    # --- Continuum Memory System (PAPER.md §5)
    cms_periods: tuple[int, ...] = (16, 64)  # tokens per update of each level, in chain order
    cms_variant: str = "sequential"  # sequential (Eq. 70/73) | independent (Eq. 74) | nested (Eq. 72)
    cms_lr: float = 1e-5  # eta^(l) of Eq. 71 (per token; the chunk's gradients are summed)
    cms_clip: float = 100.0  # clip on each level's summed gradient, per batch item: a guard, not the regime
    cms_second_order: bool = False  # backprop the outer loss through the inner CMS updates
    cms_grad: str = "exact"  # exact (every path inside the level's chunk) | segment (paths inside gcd segments)

    # --- attention
    window: int | None = None  # sliding-window attention (Eq. 63); None = global
    rope_base: float = 10000.0

    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.cms_periods = tuple(int(p) for p in self.cms_periods)
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} is not divisible by n_heads={self.n_heads}")
        if self.ffn == "cms" and (not self.cms_periods or min(self.cms_periods) < 1):
            raise ValueError(f"cms_periods must be positive token counts, got {self.cms_periods}")
        if self.chunk_size < 1 or (self.proj_chunk_size is not None and self.proj_chunk_size < 1):
            raise ValueError("chunk sizes must be >= 1")
        if not isinstance(self.inner_steps, int) or not 1 <= self.inner_steps <= 16:
            raise ValueError(f"inner_steps must be a whole number from 1 to 16, got {self.inner_steps!r}")
        for name, allowed in [
            ("mixer", {"selfmod", "attention", "titans", "deltanet", "linear"}),
            ("ffn", {"cms", "mlp"}),
            ("inner_objective", {"l2", "dot"}),
            ("eq92_sign", {"corrected", "printed"}),
            ("cms_variant", {"sequential", "independent", "nested"}),
            ("cms_grad", {"exact", "segment"}),
            ("inner_update", {"gd", "normalized"}),
            ("titans_gates", {"data", "static"}),
        ]:
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name}={getattr(self, name)!r}; expected one of {sorted(allowed)}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def proj_chunk(self) -> int:
        return self.proj_chunk_size or self.chunk_size

    def to_dict(self) -> dict:
        d = asdict(self)
        d["cms_periods"] = list(self.cms_periods)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelConfig:
        return dataclass_from_dict(cls, d, "config keys")


def dataclass_from_dict(cls, d: dict, what: str):
    """cls(**d), refusing keys the dataclass does not have (a typo must not be silently dropped)."""
    unknown = set(d) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what}: {sorted(unknown)}")
    return cls(**d)
