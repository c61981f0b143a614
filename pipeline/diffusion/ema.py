"""The exponential moving average of the weights (what sampling uses), on torch's own AveragedModel.

ema <- d * ema + (1 - d) * param after every optimizer step, with d = min(decay, (1 + n) / (10 + n)) where n counts the
updates so far: the warm-up keeps a short run from being stuck at the initial weights. The first update copies the
parameters (AveragedModel's rule).
"""
from contextlib import contextmanager

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel


def ema_model(model: nn.Module, decay: float) -> AveragedModel:
    """An AveragedModel of `model` holding the warmed-up EMA of its parameters (buffers are taken as they are)."""

    @torch.no_grad()
    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], n_averaged: torch.Tensor) -> None:
        d = min(decay, (1 + int(n_averaged)) / (10 + int(n_averaged)))
        for a, p in zip(averaged, current):
            a.lerp_(p, 1 - d)

    return AveragedModel(model, multi_avg_fn=update, use_buffers=False)


def ema_weights(model: nn.Module, ema: AveragedModel) -> dict[str, torch.Tensor]:
    """`model`'s state dict with the EMA values in place of its parameters (buffers as the model has them)."""
    averaged = ema.module.named_parameters(remove_duplicate=False)  # a tied parameter under each of its names
    return {**model.state_dict(), **{k: v.detach().clone() for k, v in averaged}}


@contextmanager
def swapped_in(model: nn.Module, ema: AveragedModel):
    """Run the block with the EMA weights loaded into `model` and dropout off; its own weights and mode come back
    after."""
    own = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.load_state_dict(ema_weights(model, ema))
    model.eval()
    try:
        yield model
    finally:
        model.load_state_dict(own)
        model.train(was_training)
