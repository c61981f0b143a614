"""The training loop both baselines share.

AdamW (weight decay on weight matrices only), linear warm-up then linear decay to 0 at `steps`, gradient norm clipped
at GRAD_CLIP, bfloat16 autocast where `bf16` gives it (pipeline.precision.use_bf16). Batches hold examples of similar
length (pipeline.finetune.length_batches over seeded permutations of the training pairs), planned up front from the
seed, so a run resumed from its checkpoint (every `checkpoint_every_s` seconds and at the end, written atomically)
continues the same computation: same batches, same dropout draws.
"""
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from pipeline.finetune import GRAD_CLIP, length_batches, lr_factor
from pipeline.io import atomic_path
from pipeline.precision import Bf16, precision_report, use_bf16
from pipeline.progress import log, progress


@dataclass(frozen=True)
class TrainParams:
    """params.yaml `baselines.<model>.train`: optimiser steps, examples per step, peak learning rate, its warm-up."""

    steps: int
    batch_size: int
    lr: float
    warmup_steps: int
    weight_decay: float


def batch_plan(lengths: np.ndarray, steps: int, batch_size: int, seed: int) -> list[np.ndarray]:
    """lengths: [N] tokens per training pair -> `steps` batches of pair indices: passes over seeded permutations of
    range(N), each cut into batches of similar length in a seeded order."""
    rng, batches = np.random.default_rng(seed), []
    while len(batches) < steps:
        batches += length_batches(rng.permutation(len(lengths)), lengths, batch_size, rng)
    return batches[:steps]


def save_state(path: Path, state: dict) -> None:
    with atomic_path(path, ".pt") as tmp, open(tmp, "wb") as f:
        torch.save(state, f)


def load_state(path: Path, fingerprint: dict) -> dict | None:
    """The training state saved at `path`, or None when there is none or it was saved under other settings."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        log(f"[train] {path} was written with other settings or data: starting from step 0")
        return None
    return state


def train(model: nn.Module, loss_of: Callable[[np.ndarray], torch.Tensor], lengths: np.ndarray, cfg: TrainParams,
          bf16: Bf16, seed: int, checkpoint: Path, checkpoint_every_s: float, fingerprint: dict) -> dict:
    """Train `model` in place. loss_of: pair indices [B] -> mean loss of that batch (a scalar with grad).
    fingerprint: what a checkpoint must match to be resumed (settings and data).
    -> {"steps", "minutes" (of training, across resumes), "loss_first"/"loss_last" (mean of the first / last 50
    steps), precision}."""
    plan = batch_plan(lengths, cfg.steps, cfg.batch_size, seed)
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=cfg.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_factor(s, cfg.steps, cfg.warmup_steps))
    fingerprint = {**fingerprint, "train": asdict(cfg), "bf16": bf16, "seed": seed}
    torch.manual_seed(seed)
    start, losses, seconds = 0, [], 0.0
    state = load_state(checkpoint, fingerprint)
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        torch.set_rng_state(state["torch_rng"])
        start, losses, seconds = state["step"], state["losses"], state["seconds"]
        log(f"[train] resumed from {checkpoint} at step {start}")

    def save(step: int, elapsed: float) -> None:
        save_state(checkpoint, {"fingerprint": fingerprint, "model": model.state_dict(),
                                "optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(),
                                "torch_rng": torch.get_rng_state(), "step": step, "losses": losses,
                                "seconds": elapsed})

    use = use_bf16(bf16, "cpu")
    model.train()
    began = last_save = time.monotonic()
    for step in progress(range(start, cfg.steps), total=cfg.steps - start, desc="train"):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=use):
            loss = loss_of(plan[step])
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        schedule.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0:
            log(f"[train] step {step + 1}/{cfg.steps} loss {np.mean(losses[-50:]):.3f}")
        if time.monotonic() - last_save >= checkpoint_every_s and step + 1 < cfg.steps:
            save(step + 1, seconds + time.monotonic() - began)
            last_save = time.monotonic()
    seconds += time.monotonic() - began
    save(cfg.steps, seconds)  # the finished state too: a rerun that finds it only saves the model again
    model.eval()
    return {"steps": cfg.steps, "minutes": round(seconds / 60, 2), "loss_first": round(float(np.mean(losses[:50])), 4),
            "loss_last": round(float(np.mean(losses[-50:])), 4), **precision_report(use, "cpu")}
