"""The taggers' fine-tuning under a speed lever of issue 34, against the fine-tuning stage train_taggers runs (a
benchmark: figures, never asserts; docs/controls.md, "Fine-tuning at the hardware's speed").

A lever changes the MiniLM the fine-tuning starts from and the attention kernel it runs on a CPU:
- today: as stage train_taggers fine-tunes (the encoder's dropout 0.1, the kernel PyTorch picks);
- no_dropout: every dropout of the encoder and of the tagger's head off, on SDPA's math kernel (without dropout PyTorch
  picks its flash kernel on a CPU, whose backward is the slower one: docs/diffusion.md, "SDPA's math kernel");
- no_attention_dropout: only the dropout of the attention probabilities off (most of the masks' cost), the hidden
  states' kept, on the math kernel.
It changes what is trained, so it is judged by the tagger's held-out macro-F1 against the stage's own model, with a
paired bootstrap interval over the valid and over the test examples, next to the seconds per training step of both,
timed in interleaved rounds on the same real batches.
"""
import copy
import statistics
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.metrics import f1_score
from torch import nn

from pipeline.bootstrap import bootstrap_draws
from pipeline.diffusion.trainer import training_forward
from pipeline.finetune import GRAD_CLIP, TaggerModel, Tokens, collate, label_ids, length_batches, \
    pretrained_encoder
from pipeline.taggers import HEADS, TAGGERS


@dataclass(frozen=True)
class Lever:
    """hidden_dropout: the dropout probability of the hidden states, the encoder's and the head's; attention_dropout:
    that of the attention probabilities (None: the encoder's own, 0.1); cpu_attention: "auto" (PyTorch's choice) or
    "math" (SDPA's math kernel), for training and prediction alike (trainer.training_forward)."""

    hidden_dropout: float | None = None
    attention_dropout: float | None = None
    cpu_attention: str = "auto"


LEVERS = {"today": Lever(),
          "no_dropout": Lever(hidden_dropout=0.0, attention_dropout=0.0, cpu_attention="math"),
          "no_attention_dropout": Lever(attention_dropout=0.0, cpu_attention="math")}


def lever_encoder(lever: Lever, encoder: nn.Module | None = None) -> nn.Module:
    """The BertModel a lever fine-tunes from: `encoder` (default: the packaged MiniLM) with the lever's dropout
    probabilities set in its config (the tagger's head reads hidden_dropout_prob) and in its nn.Dropout modules (those
    of the attention probabilities are BERT's `attention.self.dropout`)."""
    encoder = encoder if encoder is not None else pretrained_encoder()
    if lever.hidden_dropout is not None:
        encoder.config.hidden_dropout_prob = lever.hidden_dropout
    if lever.attention_dropout is not None:
        encoder.config.attention_probs_dropout_prob = lever.attention_dropout
    for name, module in encoder.named_modules():
        p = lever.attention_dropout if name.endswith("attention.self.dropout") else lever.hidden_dropout
        if isinstance(module, nn.Dropout) and p is not None:
            module.p = p
    return encoder


def step_seconds(name: str, tokens: Tokens, y: dict[str, np.ndarray], batch_size: int, bf16: bool,
                 levers: list[str], batches: int, rounds: int, seed: int, bert: nn.Module | None = None) -> dict:
    """Seconds per fine-tuning step (forward, backward, clipping, AdamW) of each lever on the same `batches` real
    training batches (length-bucketed as the fine-tuning cuts them), each lever on its own model from the same
    weights, in `rounds` interleaved rounds after one warm-up step -> {lever: {"seconds_per_step": median round,
    "rounds_seconds": [...]}}. tokens, y: the training split's (y: {head: long [n]}); bert: the BertModel to start
    from (default: the packaged MiniLM; tests pass a tiny random one)."""
    rng = np.random.default_rng(seed)
    chosen = length_batches(rng.permutation(len(tokens[0])), np.array([len(i) for i in tokens[0]]), batch_size,
                            rng)[:batches]
    inputs = [(collate(tokens, b), {h: torch.from_numpy(y[h][b]) for h in y}) for b in chosen]
    heads = {h: len(HEADS[h]) for h in TAGGERS[name].heads}
    base = bert if bert is not None else pretrained_encoder()
    models = {lever: TaggerModel(lever_encoder(LEVERS[lever], copy.deepcopy(base)), heads).train() for lever in levers}
    optimizers = {lever: torch.optim.AdamW(m.parameters(), lr=1e-5, fused=True) for lever, m in models.items()}

    def step(lever: str, batch, labels) -> None:
        with training_forward(torch.device("cpu"), bf16, LEVERS[lever].cpu_attention):
            logits = models[lever](*batch)
        sum(F.cross_entropy(logits[h].float(), labels[h]) for h in heads).backward()
        nn.utils.clip_grad_norm_(models[lever].parameters(), GRAD_CLIP)
        optimizers[lever].step()
        optimizers[lever].zero_grad(set_to_none=True)

    seconds = {lever: [] for lever in levers}
    for lever in levers:
        step(lever, *inputs[0])
    for _ in range(rounds):
        for lever in levers:
            start = time.perf_counter()
            for batch, labels in inputs:
                step(lever, batch, labels)
            seconds[lever].append((time.perf_counter() - start) / len(inputs))
    return {lever: {"seconds_per_step": round(statistics.median(s), 4), "rounds_seconds": [round(x, 4) for x in s]}
            for lever, s in seconds.items()}


def macro_f1(y: dict[str, np.ndarray], predicted: dict[str, np.ndarray]) -> float:
    """The macro-F1 (percent) averaged over the heads, each over the labels of its true and predicted values, as
    taggers.scores reports it: y, predicted: {head: label indices [n]}."""
    return float(np.mean([100 * f1_score(y[h], predicted[h], average="macro", zero_division=0) for h in y]))


def paired_macro_f1(y: dict[str, np.ndarray], a: dict[str, np.ndarray], b: dict[str, np.ndarray],
                    resamples: int) -> dict[str, float]:
    """Macro-F1 of predictions b minus a on the same examples, with its paired bootstrap 95% percentile interval
    (the same resampled examples for both) -> {"a", "b", "difference", "low", "high"}. y, a, b: {head: indices [n]}."""
    draws = bootstrap_draws(len(next(iter(y.values()))), resamples)
    diffs = [macro_f1({h: v[d] for h, v in y.items()}, {h: v[d] for h, v in b.items()})
             - macro_f1({h: v[d] for h, v in y.items()}, {h: v[d] for h, v in a.items()}) for d in draws]
    low, high = np.percentile(diffs, [2.5, 97.5])
    fa, fb = macro_f1(y, a), macro_f1(y, b)
    return {"a": round(fa, 2), "b": round(fb, 2), "difference": round(fb - fa, 2), "low": round(float(low), 2),
            "high": round(float(high), 2)}


def labels_of(df, name: str) -> dict[str, np.ndarray]:
    """{head: label indices [n]} of a split of tagger `name`."""
    return {h: label_ids(df, h) for h in TAGGERS[name].heads}
