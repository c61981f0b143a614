"""Where one default training step's time goes, and what each speed lever of issue 34 would save (a benchmark:
figures, never asserts; docs/diffusion.md, "Training at the hardware's speed").

Each lever is a change to a copy of the trained model (the model itself is left untouched), and optionally the
attention kernel SDPA may pick, timed on the same real training batch as stage bench, in one process, next to one
matmul peak:
- today: the model as it trains (dropout 0.1 until issue 34 turned it off: docs/diffusion.md; since then the dropout
  levers change nothing);
- sdpa_math: the same on SDPA's math kernel (without dropout SDPA picks its flash kernel on CPU, whose backward is
  slow at these shapes);
- attention_dropout_off: no dropout on the attention probabilities (the [B, heads, L, L] random masks);
- attention_dropout_off+sdpa_math: the same, on SDPA's math kernel (without dropout SDPA picks its flash kernel
  on CPU, whose backward is slow at these shapes);
- dropout_off: no dropout anywhere;
- embedding_frozen: the WordPiece embedding table gets no gradient and no AdamW update (the most a sparse or partly
  frozen table could save).
Only `today` is what the default trains; the others change what is trained, so a lever is adopted only when the
committed sweep (stages/sweep.py) backs it at equal training minutes.

The levers are timed in interleaved rounds (every lever once per round), so that the drift of a shared machine hits
them alike; per lever: the median round's seconds per step with its figures (bench.step_figures), every round's
seconds, and the torch.profiler table of the ops with the most self CPU time (share of all ops' self time).
"""
import contextlib
import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from pipeline.diffusion.inputs import Batch
from pipeline.diffusion.schedule import Schedule
from pipeline.experiments.bench import step_figures, timed, train_step, train_step_flops


def attention_dropout(p: float) -> Callable[[nn.Module], None]:
    """Set the dropout on the attention probabilities: HF BERT's self-attention passes its `dropout.p` to SDPA; the
    from-scratch Block (pipeline.diffusion.model) keeps it in `dropout`."""
    def apply(model: nn.Module) -> None:
        for name, module in model.named_modules():
            if name.endswith("attention.self"):
                module.dropout.p = p
            elif hasattr(module, "heads") and isinstance(getattr(module, "dropout", None), float):
                module.dropout = p
    return apply


def no_dropout(model: nn.Module) -> None:
    attention_dropout(0.0)(model)
    for module in model.modules():
        if isinstance(module, nn.Dropout):
            module.p = 0.0


def frozen_embedding(model: nn.Module) -> None:
    model.embedding.weight.requires_grad_(False)


@dataclass(frozen=True)
class Lever:
    """changes: applied in order to the model's copy; sdpa: the SDPA kernels allowed (None: PyTorch's choice)."""

    changes: tuple[Callable[[nn.Module], None], ...] = ()
    sdpa: tuple[SDPBackend, ...] | None = None

    def kernels(self) -> contextlib.AbstractContextManager:
        return sdpa_kernel(list(self.sdpa)) if self.sdpa else contextlib.nullcontext()


LEVERS = {
    "today": Lever(),
    "sdpa_math": Lever((), (SDPBackend.MATH,)),
    "attention_dropout_off": Lever((attention_dropout(0.0),)),
    "attention_dropout_off+sdpa_math": Lever((attention_dropout(0.0),), (SDPBackend.MATH,)),
    "dropout_off": Lever((no_dropout,)),
    "embedding_frozen": Lever((frozen_embedding,)),
}


def step_profile(step: Callable[[], None], steps: int, top: int) -> list[dict]:
    """torch.profiler over `steps` calls of a training step -> the `top` ops by self CPU time:
    [{"op", "share": of all ops' self CPU time, "calls": per step}]."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            step()
    events = sorted((e for e in prof.key_averages() if e.self_cpu_time_total > 0),
                    key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [{"op": e.key, "share": round(e.self_cpu_time_total / total, 3), "calls": e.count // steps}
            for e in events[:top]]


def lever_figures(model: nn.Module, batch: Batch, schedule: Schedule, bf16: bool, peak: float, steps: int,
                  rounds: int, top: int, levers: list[str]) -> dict:
    """lever name -> {step_figures of its median round, "rounds_seconds": [s / step per round], "profile":
    step_profile's table}. Each lever trains its own copy of `model` (train mode) from the same weights; a round times
    `steps` steps of every lever in turn, after one warm-up step each."""
    device = next(model.parameters()).device
    copies, flops, seconds = {}, {}, {name: [] for name in levers}
    for name in levers:
        variant = copy.deepcopy(model).train()
        for change in LEVERS[name].changes:
            change(variant)
        with LEVERS[name].kernels():
            flops[name] = train_step_flops(variant, batch, schedule, bf16)
        copies[name] = train_step(variant, batch, schedule, bf16)
    for i in range(rounds):
        for name in levers:
            with LEVERS[name].kernels():
                seconds[name].append(timed(copies[name], device, steps, warmup=i == 0))
    out = {}
    for name in levers:
        with LEVERS[name].kernels():
            profile = step_profile(copies[name], steps, top)
        out[name] = {**step_figures(batch, statistics.median(seconds[name]), flops[name], peak, bf16),
                     "rounds_seconds": [round(s, 4) for s in seconds[name]], "profile": profile}
    return out
