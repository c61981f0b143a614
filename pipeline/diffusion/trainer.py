"""Training of a DiffusEmp model (either family): AdamW, seeded shuffled batches, EMA weights, resumable checkpoints,
optional DDP.

Read top to bottom:
- DataOrder        which examples rank r trains on at step s: a pure function of (seed, step), so a resumed run needs
                   only the step count to continue the exact data order.
- LevelDropout     which control levels each of those examples gives (condition dropout), the same kind of function.
- Objective        the model + schedule as one nn.Module whose forward is the loss, the unit DDP wraps.
- train            the loop; the training state (checkpoint.py) is written atomically every few minutes / steps and at
                   the end, and picked up on the next call; then the held-out figures of the EMA weights (evaluate.py).

Distributed: under `torchrun`, `init_distributed()` joins the process group (gloo on CPU, nccl on GPU); `train` then
wraps the objective in DistributedDataParallel and every rank trains on its own shard of each global batch. Without
torchrun everything runs in one process.
"""
import contextlib
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.nn.parallel import DistributedDataParallel

from pipeline.diffusion.checkpoint import examples_digest, load_state, rng_state, save_state, set_rng_state
from pipeline.diffusion.config import TrainConfig
from pipeline.diffusion.ema import ema_model, ema_weights
from pipeline.diffusion.evaluate import accuracy_by_noise, held_out_loss, held_out_sampling
from pipeline.diffusion.inputs import Batch, Example, collate, free_levels
from pipeline.diffusion.losses import training_loss
from pipeline.diffusion.schedule import Schedule
from pipeline.errors import PipelineError
from pipeline.progress import log, progress
from pipeline.precision import precision_report, use_bf16

# Printed per log line when present: the continuous family's loss terms or the masked family's cross-entropy, and the
# token accuracy of the prediction.
TERMS = ("loss", "mse", "prior", "rounding", "ce", "accuracy")


# --- distributed helpers -------------------------------------------------------------------------------------------

def init_distributed() -> torch.device:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1) and return this rank's device.

    gloo on CPU, nccl on GPU (one GPU per local rank). On CPU the cores are shared out between the local ranks.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        if not cuda:
            local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    return device


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank (so all ranks enter a collective together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# --- data order ----------------------------------------------------------------------------------------------------

class DataOrder:
    """Shuffled batches without replacement, one fresh permutation per epoch, sharded across ranks.

    Epoch e is torch.randperm(n) drawn from a generator seeded with (seed, e), of which the first
    (n // batch_size) * batch_size examples are used (the tail that does not fill a batch waits for a later epoch).
    Without length grouping, global batch k of the epoch is the slice [k * batch_size, (k + 1) * batch_size) of it.
    With `lengths` (one per example) and group_batches > 1, every run of group_batches batches of the permutation is
    sorted by length and cut into batches again, and the epoch's batches come in an order drawn from the same
    generator: each batch holds examples of similar length, so padding to its longest costs little. Rank r trains on
    the r-th strided share of each global batch; the shares are disjoint and together they are the single-process
    batch, so the data seen does not depend on the number of ranks. A pure function of (seed, step).
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1,
                 lengths: Sequence[int] | None = None, group_batches: int = 0):
        if batch_size % world or n < batch_size:
            raise PipelineError(f"batch_size={batch_size} must be a multiple of the {world} ranks and at most the "
                                f"{n} training examples: fix params.yaml `train.batch_size`")
        if lengths is not None and len(lengths) != n:
            raise PipelineError(f"DataOrder: {len(lengths)} lengths for {n} examples")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.lengths = None if lengths is None or group_batches <= 1 else torch.as_tensor(lengths)
        self.group = group_batches * batch_size
        self.per_epoch = n // batch_size
        self._epoch, self._batches = -1, None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index within the epoch) of optimizer step `step` (0-based)."""
        return divmod(step, self.per_epoch)

    def epoch_batches(self, epoch: int) -> torch.Tensor:
        """The global batches of `epoch`, in training order -> example indices [per_epoch, batch_size]."""
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        perm = torch.randperm(self.n, generator=g)[:self.per_epoch * self.batch_size]
        if self.lengths is None:
            return perm.view(self.per_epoch, self.batch_size)
        groups = [run[self.lengths[run].argsort(stable=True)] for run in perm.split(self.group)]
        batches = torch.cat(groups).view(self.per_epoch, self.batch_size)
        return batches[torch.randperm(self.per_epoch, generator=g)]

    def indices(self, step: int) -> list[int]:
        """Example indices this rank trains on at `step`: batch_size / world of them."""
        epoch, k = self.position(step)
        if epoch != self._epoch:  # one epoch's batches, drawn once
            self._epoch, self._batches = epoch, self.epoch_batches(epoch)
        return self._batches[k][self.rank::self.world].tolist()


class LevelDropout:
    """Condition dropout over the control levels: each training example gives one subset of the model's levels,
    drawn from `levels` (subsets of SIGNALS) with `weights`; the others are freed (inputs.free_levels). The draws of a
    step come from a generator seeded with (seed, step), so a resumed run draws the same. No subsets: every example
    gives every level."""

    def __init__(self, levels: Sequence[Sequence[str]], weights: Sequence[float], signals: Sequence[str], seed: int):
        self.free = [tuple(s for s in signals if s not in set(given)) for given in levels]  # per subset: freed levels
        self.weights = torch.tensor(weights, dtype=torch.float64)
        self.seed = seed

    def __call__(self, examples: Sequence[Example], step: int) -> list[Example]:
        if not self.free:
            return list(examples)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + step + 7)
        pick = torch.multinomial(self.weights, len(examples), replacement=True, generator=g).tolist()
        return [free_levels(e, self.free[k]) if self.free[k] else e for e, k in zip(examples, pick)]


# --- the loss module -----------------------------------------------------------------------------------------------

class Objective(nn.Module):
    """forward(batch, generator) = training_loss(model, batch, schedule, generator=generator).

    DDP needs the module whose forward produces the loss; the loss reads the model's embedding and output head
    besides its forward, so the whole objective is that module.
    """

    def __init__(self, model: nn.Module, schedule: Schedule):
        super().__init__()
        self.model, self.schedule = model, schedule

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return training_loss(self.model, batch, self.schedule, generator=generator)


# --- the loop ------------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """ema: the EMA weights as the model's state dict (what save_model writes). history: one dict per log point
    (step, TERMS means over the window, lr, examples_per_s, minutes of training so far). summary: the figures of
    metrics/train.json. valid_texts: the held-out sampling outputs (for a fluency score)."""

    ema: dict[str, torch.Tensor]
    history: list[dict]
    summary: dict
    valid_texts: list[str]


# The SDPA kernel of a training forward pass on a CPU: the explicit softmax(QK^T)V, whose backward is matmuls. Left to
# PyTorch ("auto"), SDPA takes its flash kernel when there is no attention dropout, and the CPU backward of that one
# is slower at these shapes (docs/diffusion.md, "Training at the hardware's speed"). The same function either way;
# GPUs and inference (whose forward the flash kernel runs faster) keep PyTorch's choice.
CPU_ATTENTION = "math"


def training_forward(device: torch.device, bf16: bool, cpu_attention: str = CPU_ATTENTION) -> contextlib.ExitStack:
    """The context of a training forward pass (its backward runs the kernels picked here): bfloat16 autocast when
    bf16; on a CPU, SDPA's math kernel when cpu_attention is "math" ("auto": PyTorch's choice)."""
    if cpu_attention not in ("math", "auto"):
        raise ValueError(f"cpu_attention is {cpu_attention!r}: expected math or auto")
    stack = contextlib.ExitStack()
    stack.enter_context(torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16))
    if device.type == "cpu" and cpu_attention == "math":
        stack.enter_context(sdpa_kernel(SDPBackend.MATH))
    return stack


def adamw(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW with its fused kernel: one pass over each parameter per step instead of one per arithmetic operation,
    which matters because the whole embedding table gets a (dense) gradient at every step."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=True)


def train(model: nn.Module, examples: list[Example], schedule: Schedule, cfg: TrainConfig, seed: int,
          checkpoint: Path, fingerprint: dict, valid: list[Example] = (),
          on_log: Callable[[dict], None] | None = None) -> TrainResult:
    """Train `model` (already on its device, identically initialised on every rank) on `examples`.

    Resumes from `checkpoint` when it holds a state with the same `fingerprint` (everything the run depends on except
    the step count, so raising `steps` continues a finished run) and at most cfg.steps steps; writes it atomically
    (rank 0) every cfg.checkpoint_every_s seconds / cfg.checkpoint_every_steps steps and at the end. Stops early after
    cfg.max_minutes of training (0 = never), at a step all ranks agree on.
    `valid`: examples for the held-out figures of the final EMA weights (fixed noise, dropout off).
    on_log: called on rank 0 with every log point (e.g. DVCLive).
    """
    rank, world = rank_and_world()
    device = next(model.parameters()).device
    order = DataOrder(len(examples), cfg.batch_size, seed, rank, world, [len(e) for e in examples],
                      cfg.length_group_batches)
    dropout = LevelDropout(cfg.given_levels, cfg.given_weights, model.cfg.signals, seed * 1000 + rank)
    objective = Objective(model, schedule)
    net = DistributedDataParallel(objective) if world > 1 else objective
    opt = adamw(model, cfg.lr, cfg.weight_decay)
    ema = ema_model(model, cfg.ema_decay)
    # Each rank draws its own noise and dropout; both streams are part of the checkpoint.
    generator = torch.Generator(device).manual_seed(seed * 1000 + rank)
    torch.manual_seed(seed * 1000 + rank)
    bf16 = use_bf16(cfg.bf16, device)
    fingerprint = {**fingerprint, "world": world, "batch_size": cfg.batch_size, "data": examples_digest(examples),
                   "bf16": bf16}  # the precision that ran: a bfloat16 run does not resume in float32, or back

    start, history, minutes_before = 0, [], 0.0
    state = load_state(Path(checkpoint), fingerprint)
    if state is not None and state["step"] > cfg.steps:
        log(f"[train] {checkpoint} is at step {state['step']} > steps={cfg.steps}: starting from step 0")
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        set_rng_state(generator, state["rng"][rank])
        start, history, minutes_before = state["step"], state["history"], state.get("minutes", 0.0)
        if rank == 0:
            log(f"[train] resumed from {checkpoint} at step {start} (epoch, batch = {order.position(start)})")
            for point in history if on_log is not None else ():
                on_log(point)  # the logger starts afresh: give it the points before the resume

    t_start = last_save = time.monotonic()

    def minutes() -> float:
        return minutes_before + (time.monotonic() - t_start) / 60

    def save(step: int) -> None:
        rngs = [None] * world
        if world > 1:
            dist.all_gather_object(rngs, rng_state(generator))
        else:
            rngs = [rng_state(generator)]
        if rank == 0:
            save_state(checkpoint, {"fingerprint": fingerprint, "step": step, "position": order.position(step),
                                    "model": model.state_dict(), "optimizer": opt.state_dict(),
                                    "ema": ema.state_dict(), "rng": rngs, "history": history, "minutes": minutes()})

    model.train()
    sums, n_window, ex_window, t_window = {}, 0, 0, time.monotonic()
    done = start
    steps = range(start, cfg.steps)
    for step in progress(steps, desc="train", every_s=60.0) if rank == 0 else steps:
        batch = collate(dropout([examples[i] for i in order.indices(step)], step)).to(device)
        with training_forward(device, bf16):
            loss, terms = net(batch, generator)
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        done = step + 1
        ema.update_parameters(model)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v  # tensors: no device sync per step
        n_window, ex_window = n_window + 1, ex_window + len(batch) * world

        out_of_time = any_rank(cfg.max_minutes > 0 and minutes() >= cfg.max_minutes)
        if done % cfg.log_every == 0 or done == cfg.steps or out_of_time:
            history.append({**_log_point(done, sums, n_window, ex_window, time.monotonic() - t_window),
                            "lr": cfg.lr_at(step), "minutes": round(minutes(), 3)})
            if rank == 0:
                h = history[-1]
                log(f"[train] step {done}/{cfg.steps} " + " ".join(f"{k} {h[k]:.4f}" for k in TERMS if k in h)
                    + f" | lr {h['lr']:.2e} | {h['examples_per_s']:.1f} examples/s")
                if on_log is not None:
                    on_log(h)
            sums, n_window, ex_window, t_window = {}, 0, 0, time.monotonic()
        if out_of_time:
            if rank == 0:
                log(f"[train] max_minutes={cfg.max_minutes} reached at step {done}: stopping")
            break
        now = time.monotonic()
        due = ((cfg.checkpoint_every_s > 0 and now - last_save >= cfg.checkpoint_every_s)
               or (cfg.checkpoint_every_steps > 0 and done % cfg.checkpoint_every_steps == 0))
        if any_rank(due) and done < cfg.steps:
            save(done)
            last_save = time.monotonic()
    train_s = time.monotonic() - t_start
    save(done)

    summary = {"steps": done, "resumed_from_step": start, "world_size": world, **precision_report(bf16, device),
               "batch_size": cfg.batch_size, "parameters": sum(p.numel() for p in model.parameters()),
               "train_examples": len(examples), "epochs": round(done * cfg.batch_size / len(examples), 3),
               "train_minutes": round(minutes(), 2),
               "examples_per_s_this_run": round((done - start) * cfg.batch_size / train_s, 2) if train_s else None,
               "final": {k: history[-1][k] for k in TERMS if history and k in history[-1]}}
    texts = []
    if valid and rank == 0:
        summary["valid"] = held_out_loss(model, ema, schedule, valid, cfg.batch_size, seed, bf16)
        summary["valid_accuracy_by_noise"] = accuracy_by_noise(model, ema, schedule, valid, cfg.batch_size, seed,
                                                               bf16)
        if cfg.valid_sample_examples > 0:
            summary["valid_sampling"], texts = held_out_sampling(model, ema, schedule,
                                                                 valid[:cfg.valid_sample_examples], cfg.batch_size,
                                                                 cfg.valid_sample_steps, seed, bf16)
    return TrainResult(ema_weights(model, ema), history, summary, texts)


def _log_point(step: int, sums: dict, n: int, examples: int, seconds: float) -> dict:
    """Mean of each term over the window (averaged over ranks too) and the window's examples/s."""
    keys = sorted(sums)
    means = torch.stack([sums[k].float() for k in keys]) / n  # [n_terms]
    if dist.is_initialized():
        dist.all_reduce(means)
        means /= dist.get_world_size()
    return {"step": step, **{k: round(float(v), 6) for k, v in zip(keys, means)},
            "examples_per_s": round(examples / seconds, 2) if seconds > 0 else None}
