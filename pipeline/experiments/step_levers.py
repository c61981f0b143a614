"""Where one default training step's time goes, and what each speed lever of issue 34 would save (a benchmark:
figures, never asserts; docs/diffusion.md, "Training at the hardware's speed").

Each lever is a change to a copy of the trained model (the model itself is left untouched), and optionally the
attention kernel of its training forward, timed on the same real training batch as stage bench, in one process, next
to one matmul peak:
- today: the model as the default trains it (trainer.training_forward: SDPA's math kernel on a CPU);
- sdpa_auto: the same on the kernel PyTorch picks (on a CPU without dropout: flash, what the default trained on before
  issue 34 forced the math kernel);
- embedding_frozen: the WordPiece embedding table gets no gradient and no AdamW update (the most a sparse or partly
  frozen table could save); it changes what is trained, so it would be adopted only when the committed sweep
  (stages/sweep.py) backs it at equal training minutes.
(The dropout levers of the first profile are settled: the default trains without dropout since the dropout sweep.)

The levers are timed in interleaved rounds (every lever once per round), so that the drift of a shared machine hits
them alike; per lever: the median round's seconds per step with its figures (bench.step_figures), every round's
seconds, and the torch.profiler table of the ops with the most self CPU time (share of all ops' self time).
"""
import copy
import statistics
from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from pipeline.diffusion.inputs import Batch
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.trainer import CPU_ATTENTION
from pipeline.experiments.bench import step_figures, timed, train_step, train_step_flops


def frozen_embedding(model: nn.Module) -> None:
    model.embedding.weight.requires_grad_(False)


@dataclass(frozen=True)
class Lever:
    """changes: applied in order to the model's copy; cpu_attention: the training forward's kernel on a CPU
    (trainer.training_forward)."""

    changes: tuple[Callable[[nn.Module], None], ...] = ()
    cpu_attention: str = CPU_ATTENTION


LEVERS = {
    "today": Lever(),
    "sdpa_auto": Lever(cpu_attention="auto"),
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
    step_profile's table}. Each lever trains its own copy of `model` (train mode) from the same weights, under
    bfloat16 autocast when bf16 and its own attention kernel; a round times `steps` steps of every lever in turn,
    after one warm-up step each."""
    device = next(model.parameters()).device
    steppers, flops, seconds = {}, {}, {name: [] for name in levers}
    for name in levers:
        lever = LEVERS[name]
        variant = copy.deepcopy(model).train()
        for change in lever.changes:
            change(variant)
        flops[name] = train_step_flops(variant, batch, schedule, bf16, lever.cpu_attention)
        steppers[name] = train_step(variant, batch, schedule, bf16, lever.cpu_attention)
    for i in range(rounds):
        for name in levers:
            seconds[name].append(timed(steppers[name], device, steps, warmup=i == 0))
    return {name: {**step_figures(batch, statistics.median(seconds[name]), flops[name], peak, bf16),
                   "rounds_seconds": [round(s, 4) for s in seconds[name]],
                   "profile": step_profile(steppers[name], steps, top)} for name in levers}
