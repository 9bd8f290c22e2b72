"""Training and streaming throughput of every model against a same-size Transformer, in one run.

    python bench/bench_model_speed.py [--d-model 128 --n-layers 4 --seq 512 --batch 8 --steps 3]

Training = forward + backward of the next-token loss with every inner update on, exactly as trained.
Also prints parameters and forward FLOPs per token (counted by torch.utils.flop_counter), so the ratio
can be read against the extra work each model does. Streaming is measured on the app's default model.
"""

from __future__ import annotations

import argparse
import logging
import time

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

import nested


def train_throughput(model, tokens, steps: int) -> float:
    def step():
        logits = model(tokens)
        loss = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))
        loss.backward()
        model.zero_grad(set_to_none=True)

    step()  # warm-up
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return tokens.numel() * steps / (time.perf_counter() - t0)


def flops_per_token(model, tokens) -> float:
    with FlopCounterMode(display=False) as fc:
        model(tokens)
    return fc.get_total_flops() / tokens.numel()


def stream_speed(model, n: int, trace: bool, repeats: int = 3) -> float:
    """Seconds per token, feeding one token per call as the app does (best of `repeats`)."""
    tok = torch.randint(0, 256, (1, n))
    best = float("inf")
    with torch.no_grad():
        for _ in range(repeats):
            state, t0 = None, time.perf_counter()
            for t in range(n):
                state = model.stream(tok[:, t : t + 1], state=state, trace=trace).state
            best = min(best, (time.perf_counter() - t0) / n)
    return best


def compiled_training(a, tokens) -> None:
    """Hope compiled for training (`nested.compile_model(model, "train")`) and eager (the default model, the
    eager gate) against the Transformer, eager and compiled, measured back to back in each of three rounds so
    the machine's drift in speed cancels within a round's ratios. With `cms_grad="segment"` each CMS segment's
    forward, segment gradient and backward is one graph; with the default "exact" gradient only the chunk
    steps compile."""

    def build(name, **kw):
        return nested.build_model(name, d_model=a.d_model, n_layers=a.n_layers, seed=0, device="cpu", **kw)

    hope = nested.compile_model(build("hope", cms_grad=a.compiled_cms_grad), "train")
    t0 = time.perf_counter()
    train_throughput(hope, tokens, 0)  # compiles
    compile_s = time.perf_counter() - t0
    transformer = build("transformer")
    # its input check (a host sync) breaks the graph there, as intended: not worth a warning here
    logging.getLogger("torch._dynamo").setLevel(logging.ERROR)
    transformer_compiled = torch.compile(build("transformer"))
    train_throughput(transformer_compiled, tokens, 0)
    hope_eager = build("hope")
    rounds, eager = [], []  # each round measures all back to back: the ratio within a round shares its drift
    for _ in range(3):
        tr = train_throughput(transformer, tokens, a.steps)
        hp = train_throughput(hope, tokens, a.steps)
        tc = train_throughput(transformer_compiled, tokens, a.steps)
        eager.append(train_throughput(hope_eager, tokens, a.steps) / tr)
        rounds.append((hp, tr, tc))
    vs_eager = sorted(hp / tr for hp, tr, _ in rounds)
    vs_compiled = sorted(hp / tc for hp, _, tc in rounds)
    eager.sort()
    print(f"\nhope eager (the default model), 3 alternating rounds: {' / '.join(f'{r:.3f}x' for r in eager)}"
          f" the eager transformer, median {eager[1]:.3f}x")  # fmt: skip
    what = "segment graphs" if hope.segment_graph is not None else "chunk graphs"
    print(f"\nhope (cms_grad={a.compiled_cms_grad}), compiled for training ({what}, {compile_s:.0f} s to compile),"
          " 3 alternating rounds:")  # fmt: skip
    for i, (hp, tr, tc) in enumerate(rounds):
        print(f"  round {i}: hope {hp:.0f} tokens/s, transformer {tr:.0f}, compiled transformer {tc:.0f}:"
              f" {hp / tr:.3f}x / {hp / tc:.3f}x")  # fmt: skip
    print(
        f"  median {vs_eager[1]:.3f}x the eager transformer (range {vs_eager[0]:.3f}-{vs_eager[2]:.3f}),"
        f" {vs_compiled[1]:.3f}x the compiled transformer (range {vs_compiled[0]:.3f}-{vs_compiled[2]:.3f})"
    )


def task_tokens(model, text_tokens: torch.Tensor, n_samples: int = 8) -> tuple[torch.Tensor, str]:
    """What a clip rate is measured on: 8 samples of the task the checkpoint was trained on (its last stage),
    or the sample text for the byte LMs and for models without a recipe."""
    from nested.tasks import make_task

    train = (getattr(model, "checkpoint_meta", None) or {}).get("train") or {}
    if train.get("task") in (None, "text"):
        return text_tokens, f"{text_tokens.shape[1]} bytes of a sample text"
    batch = make_task(train["task"], **train.get("task_args", {})).sample(n_samples, 12345)
    return batch.inputs, f"{n_samples} held-out {train['task']} samples of {batch.inputs.shape[1]} tokens"


def shipped_clip_rates(n: int = 512, also: tuple[str, ...] = ()) -> None:
    """How often the inner clips fire on the shipped Hope models (and the checkpoints in `also`), each on its
    own task: per memory, the fraction of (token, head) inner gradients clipped; per CMS level, of updates."""
    from app.models import APP_MODELS, build_frozen
    from app.samples import sample_texts

    text = next(iter(sample_texts().values()))
    text_tokens = nested.encode_text(text, limit=n)
    print("clip rates on the shipped Hope models, each on its own task:")
    models = {name: lambda name=name: build_frozen(name, seed=0, device="cpu")
              for name, (ckpt, reg, _) in APP_MODELS.items() if reg == "hope" and ckpt is not None}  # fmt: skip
    models |= {path: lambda path=path: nested.load(path, device="cpu").eval() for path in also}
    for name, build in models.items():
        model = build()
        tokens, what = task_tokens(model, text_tokens)
        with torch.no_grad():
            rates = model.stream(tokens, trace=True).trace.clip_rates()
        names = dict(enumerate(model.blocks[0].mixer.names))
        rows = []
        for key, r in rates.items():
            if " memory " in key:
                layer, m = key.replace("layer ", "").split(" memory ")
                key = f"layer {layer} {names[int(m)]}"
            rows.append(f"{key} {100 * r:.0f}%")
        cfg = model.cfg
        print(f"  {name} (inner_update {cfg.inner_update}, inner_clip {cfg.inner_clip:g}, cms_clip {cfg.cms_clip:g}; "
              f"{what}): " + ", ".join(rows))  # fmt: skip
    print()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips-also", default="", help="with --only clips: more Hope checkpoints, separated by commas")
    ap.add_argument("--d-model", type=int, default=128)
    ap.add_argument("--n-layers", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--models", default="transformer,hope,hope-attention,titans,deltanet")
    ap.add_argument("--stream-tokens", type=int, default=256)
    ap.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    ap.add_argument("--compiled-cms-grad", default="segment", choices=["segment", "exact"])
    ap.add_argument("--only", default="all", choices=["all", "train", "stream", "clips"])
    ap.add_argument("--threads", type=int, default=None, help="torch intra-op threads for training (default: "
                    "torch's, one per core; 1 is how the app and the background trainings run)")  # fmt: skip
    a = ap.parse_args()
    torch.manual_seed(0)
    if a.threads:
        torch.set_num_threads(a.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, device cpu")
    print(f"training: d_model {a.d_model}, {a.n_layers} layers, seq {a.seq}, batch {a.batch}, {a.steps} steps\n")
    tokens = torch.randint(0, 256, (a.batch, a.seq))
    small = tokens[:1, :128]
    base = None
    print(f"{'model':16s} {'params':>9s} {'MFLOP/tok':>10s} {'tokens/s':>10s} {'vs transformer':>15s}")
    if a.only in ("all", "clips"):
        shipped_clip_rates(also=tuple(p for p in a.clips_also.split(",") if p))
    if a.only in ("clips", "stream"):
        a.models = ""
    for name in filter(None, a.models.split(",")):
        model = nested.build_model(name, d_model=a.d_model, n_layers=a.n_layers, seed=0, device="cpu")
        n_params = sum(p.numel() for p in model.parameters())
        fl = flops_per_token(model, small)
        tps = train_throughput(model, tokens, a.steps)
        base = tps if name == "transformer" else base
        ratio = f"{tps / base:.3f}x" if base else "-"
        print(f"{name:16s} {n_params:9d} {fl / 1e6:10.2f} {tps:10.0f} {ratio:>15s}")
    if not a.no_compile and a.only in ("all", "train"):
        compiled_training(a, tokens)
    if a.only in ("all", "stream"):
        streaming(a)


def streaming(a) -> None:
    from app.models import APP_MODELS, DEFAULT_MODEL, build_frozen

    model = build_frozen(DEFAULT_MODEL, seed=0, device="cpu")
    cfg = APP_MODELS[DEFAULT_MODEL]
    print(f"\nstreaming the app's default model ({DEFAULT_MODEL}, {cfg}), one token per call:")
    for threads in (1, torch.get_num_threads()):
        torch.set_num_threads(threads)
        no_trace = stream_speed(model, a.stream_tokens, trace=False)
        with_trace = stream_speed(model, a.stream_tokens, trace=True)
        print(
            f"  {threads} thread(s): without trace {1 / no_trace:5.0f} tokens/s ({no_trace * 1e3:.2f} ms/token); "
            f"with full trace {with_trace * 1e3:.2f} ms/token"
        )
    if not a.no_compile:
        torch.set_num_threads(1)
        eager = stream_speed(model, a.stream_tokens, trace=False)
        t0 = time.perf_counter()
        fast = nested.compile_model(model, "stream")
        stream_speed(fast, 2, trace=False, repeats=1)  # compiles
        compile_s = time.perf_counter() - t0
        compiled = stream_speed(fast, a.stream_tokens, trace=False)
        with_trace = stream_speed(fast, a.stream_tokens, trace=True)
        print(
            f"  compiled (compile_model(model, 'stream'), 1 thread, {compile_s:.0f} s to compile): without trace "
            f"{1 / compiled:5.0f} tokens/s ({compiled * 1e3:.2f} ms/token, {eager / compiled:.2f}x eager measured "
            f"just before); with full trace {with_trace * 1e3:.2f} ms/token"
        )


if __name__ == "__main__":
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
