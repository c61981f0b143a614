"""The fine-tuned tagger variant: MiniLM trained end to end with one linear head per tagger head.

Input, one WordPiece sequence per example (pipeline.models.wordpiece_tokenizer):
- text tagger: [CLS] text [SEP], the text cut to its first `max_text_tokens` WordPieces;
- pair tagger (cm): [CLS] context [SEP] text [SEP], token types 0 then 1: a cross-encoder, every layer attends across
  context and response. The context keeps its newest `max_context_tokens` WordPieces (the turn the response answers
  comes last), the text its first `max_text_tokens`.
Model: BertModel -> mean of the last hidden states over the real tokens (the pooling MiniLM was trained with) ->
dropout (the encoder's) -> one nn.Linear per head.
Training (params.yaml `train_taggers`): AdamW, linear warm-up then linear decay to 0 over all `epochs`, cross-entropy
summed over the heads, bfloat16 autocast as `bf16` decides (pipeline.precision.use_bf16), gradient norm clipped at GRAD_CLIP. After every epoch the valid
split's macro-F1 (mean over heads) is measured; the best epoch's weights are kept and `patience` epochs without a
better one stop training. Batches hold examples of similar length, padded to their longest only.
"""
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_json, write_json
from pipeline.models import minilm_path, wordpiece_tokenizer
from pipeline.precision import precision_report, use_bf16
from pipeline.progress import log, progress
from pipeline.seeding import seed_everything
from pipeline.taggers import HEADS, TAGGERS, Tagger, TaggerParams, scores

GRAD_CLIP = 1.0  # max gradient norm (the usual BERT fine-tuning setting)
PREDICT_BATCH = 128  # examples per inference batch (length-sorted, so little padding)
BUCKET = 50  # a training epoch is cut into buckets of BUCKET batches, each sorted by length before batching
SETTINGS = ("lr", "weight_decay", "epochs", "epoch_size", "batch_size", "warmup", "patience", "max_context_tokens",
            "max_text_tokens", "bf16")  # the TaggerParams fields this variant uses, saved with the model

Tokens = tuple[list[list[int]], list[list[int]]]  # per example: WordPiece ids with [CLS]/[SEP], token type ids


def pretrained_encoder() -> nn.Module:
    """The packaged MiniLM-L6 BERT encoder, float32, its pooler dropped (loaded, then dropped: no unused weights)."""
    from transformers import BertModel

    encoder = BertModel.from_pretrained(minilm_path(), attn_implementation="sdpa", dtype=torch.float32)
    encoder.pooler = None
    return encoder


class TaggerModel(nn.Module):
    """encoder (a BertModel) + one linear head per entry of `heads` ({head: number of labels})."""

    def __init__(self, encoder: nn.Module, heads: dict[str, int]):
        super().__init__()
        self.encoder = encoder
        self.dropout = nn.Dropout(encoder.config.hidden_dropout_prob)
        self.heads = nn.ModuleDict({h: nn.Linear(encoder.config.hidden_size, n) for h, n in heads.items()})

    def forward(self, ids: torch.Tensor, types: torch.Tensor, mask: torch.Tensor) -> dict[str, torch.Tensor]:
        """ids, types, mask: long [B, L] -> {head: logits [B, n_labels]}."""
        hidden = self.encoder(input_ids=ids, token_type_ids=types, attention_mask=mask).last_hidden_state  # [B, L, H]
        weight = mask.unsqueeze(-1).to(hidden.dtype)  # [B, L, 1]
        pooled = self.dropout((hidden * weight).sum(1) / weight.sum(1).clamp(min=1))  # [B, H]
        return {h: head(pooled) for h, head in self.heads.items()}


def tokenize(tokenizer, texts: Sequence[str], contexts: Sequence[str] | None, max_text: int,
             max_context: int) -> Tokens:
    """WordPiece ids and token types of every example (module docstring: text alone, or context + text)."""
    cls, sep = tokenizer.cls_token_id, tokenizer.sep_token_id
    text_ids = tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    if contexts is None:
        ids = [[cls, *t[:max_text], sep] for t in text_ids]
        return ids, [[0] * len(i) for i in ids]
    context_ids = tokenizer(list(contexts), add_special_tokens=False, verbose=False)["input_ids"]
    ids, types = [], []
    for c, t in zip(context_ids, text_ids):
        c, t = c[-max_context:], t[:max_text]  # the newest context pieces, the first text pieces
        ids.append([cls, *c, sep, *t, sep])
        types.append([0] * (len(c) + 2) + [1] * (len(t) + 1))
    return ids, types


def collate(tokens: Tokens, idx: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Examples `idx` padded with 0 ([PAD]) to the longest of them: ids, types, attention mask, each long [B, L]."""
    ids, types = tokens
    out = np.zeros((3, len(idx), max(len(ids[i]) for i in idx)), dtype=np.int64)
    for row, i in enumerate(idx):
        n = len(ids[i])
        out[0, row, :n], out[1, row, :n], out[2, row, :n] = ids[i], types[i], 1
    return torch.from_numpy(out[0]), torch.from_numpy(out[1]), torch.from_numpy(out[2])


def epoch_indices(n: int, epoch_size: int, epochs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The training examples of each epoch: consecutive slices of `epoch_size` from a stream of seeded permutations of
    range(n), so that every example is seen once before any is seen again (an epoch_size below n subsamples)."""
    stream = np.concatenate([rng.permutation(n) for _ in range(math.ceil(epochs * epoch_size / n))])
    return [stream[e * epoch_size:(e + 1) * epoch_size] for e in range(epochs)]


def length_batches(idx: np.ndarray, lengths: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """idx (shuffled) cut into buckets of BUCKET batches, each bucket sorted by length and cut into batches of similar
    length; the batches then come in a seeded random order. ceil(len(idx) / batch_size) batches."""
    batches = []
    for start in range(0, len(idx), BUCKET * batch_size):
        bucket = idx[start:start + BUCKET * batch_size]
        bucket = bucket[np.argsort(lengths[bucket], kind="stable")]
        batches += [bucket[i:i + batch_size] for i in range(0, len(bucket), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def lr_factor(step: int, total: int, warmup_steps: int) -> float:
    """The multiplier of the learning rate at optimiser step `step` (0-based): linear warm-up over warmup_steps, then
    linear decay to 0 at `total`."""
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    return max(0.0, (total - step) / max(1, total - warmup_steps))


def optimizer_and_schedule(model: nn.Module, cfg: TaggerParams, total: int):
    """AdamW (weight decay on weight matrices only, not on biases and LayerNorm gains) and its learning-rate schedule
    over `total` optimiser steps (lr_factor)."""
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                                   {"params": rest, "weight_decay": 0.0}], lr=cfg.lr, fused=True)
    warmup_steps = round(cfg.warmup * total)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, warmup_steps))


class FinetunedTagger(Tagger):
    """MiniLM fine-tuned end to end (model: a TaggerModel); hparams: its SETTINGS."""

    variant = "finetuned"

    def __init__(self, name: str, model: TaggerModel, encoder: dict, hparams: dict):
        super().__init__(name, encoder, hparams)
        self.model = model.eval()
        self.tokenizer = wordpiece_tokenizer()
        self.bf16 = use_bf16(hparams["bf16"], "cpu")  # decided where the tagger runs, not where it was trained

    def tokenize(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> Tokens:
        return tokenize(self.tokenizer, texts, contexts, self.hparams["max_text_tokens"],
                        self.hparams["max_context_tokens"])

    def predict_proba(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        self.check_inputs(texts, contexts)
        return self.proba(self.tokenize(texts, contexts))

    def proba(self, tokens: Tokens) -> dict[str, np.ndarray]:
        """{head: float32 [n, n_labels]} of tokenised examples, longest first in batches of PREDICT_BATCH."""
        n = len(tokens[0])
        out = {h: np.empty((n, len(HEADS[h])), dtype=np.float32) for h in self.spec.heads}
        order = np.argsort([-len(ids) for ids in tokens[0]], kind="stable")
        batches = [order[i:i + PREDICT_BATCH] for i in range(0, n, PREDICT_BATCH)]
        training = self.model.training
        self.model.eval()
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            for idx in progress(batches, desc=f"{self.name} tagger ({n} inputs)"):
                for h, logits in self.model(*collate(tokens, idx)).items():
                    out[h][idx] = logits.float().softmax(-1).numpy()
        self.model.train(training)
        return out

    def save(self, directory) -> None:
        directory = Path(directory)
        config = {k: v for k, v in self.model.encoder.config.to_dict().items() if k != "_name_or_path"}  # a local path
        write_json(directory / "encoder.json", config)
        with atomic_path(directory / "model.pt", ".pt") as tmp, open(tmp, "wb") as f:
            torch.save(self.model.state_dict(), f)  # a file object: the same weights give the same bytes
        self.save_meta(directory)

    @classmethod
    def load(cls, directory) -> "FinetunedTagger":
        from transformers import BertConfig, BertModel

        directory = Path(directory)
        meta = cls.read_meta(directory, ["encoder.json", "model.pt"])
        config = BertConfig.from_dict(read_json(directory / "encoder.json"))
        model = TaggerModel(BertModel(config, add_pooling_layer=False), {h: len(HEADS[h]) for h in meta["heads"]})
        model.load_state_dict(torch.load(directory / "model.pt", map_location="cpu", weights_only=True))
        return cls(meta["name"], model, meta["encoder"], meta["hparams"])


def label_ids(df: pd.DataFrame, head: str) -> np.ndarray:
    """The labels of column `head` as indices into HEADS[head] -> long [n]."""
    index = {label: i for i, label in enumerate(HEADS[head])}
    unknown = set(df[head]) - set(index)
    if unknown:
        raise PipelineError(f"{head} data has unknown labels {sorted(unknown)[:5]}: rebuild the tagger data")
    return np.array([index[label] for label in df[head]], dtype=np.int64)


def train_finetuned(name: str, splits: dict[str, pd.DataFrame], cfg: TaggerParams, encoder: dict, seed: int,
                    bert: nn.Module | None = None) -> tuple[FinetunedTagger, dict]:
    """Fine-tune tagger `name` on splits["train"], keep the epoch with the best splits["valid"] macro-F1, score valid
    and test with it.

    splits: {train, valid, test: DataFrame[context, text, <head>...]} (pipeline.tagger_data); encoder: identity and
    settings of the MiniLM it starts from, recorded in tagger.json; bert: the BertModel to start from (default: the
    packaged MiniLM; tests pass a tiny random one). Returns the tagger and its metrics:
    {"hparams", "examples_seen", "epochs": [{epoch, train_loss, valid_macro_f1}], "best_epoch",
     "heads": {head: {valid, test}}} with `scores` per held-out split.
    """
    rng = seed_everything(seed)
    spec = TAGGERS[name]
    model = TaggerModel(bert if bert is not None else pretrained_encoder(), {h: len(HEADS[h]) for h in spec.heads})
    hparams = {key: getattr(cfg, key) for key in SETTINGS}
    tagger = FinetunedTagger(name, model, {**encoder, "frozen": False}, hparams)
    tokens = {s: tagger.tokenize(df["text"], df["context"] if spec.inputs == "pair" else None)
              for s, df in splits.items()}
    y = {s: {h: label_ids(df, h) for h in spec.heads} for s, df in splits.items()}
    lengths = np.array([len(ids) for ids in tokens["train"][0]])
    epoch_size = min(cfg.epoch_size or len(lengths), len(lengths))
    optimizer, schedule = optimizer_and_schedule(model, cfg, cfg.epochs * math.ceil(epoch_size / cfg.batch_size))

    def valid_f1(probs: dict[str, np.ndarray]) -> float:
        return float(np.mean([scores(y["valid"][h], probs[h].argmax(1), range(len(HEADS[h])))["macro_f1"]
                              for h in spec.heads]))

    history, best = [], None  # best: (valid macro-F1, epoch, weights, valid probabilities)
    for epoch, idx in enumerate(epoch_indices(len(lengths), epoch_size, cfg.epochs, rng), 1):
        model.train()
        losses = []
        batches = length_batches(idx, lengths, cfg.batch_size, rng)
        for batch in progress(batches, desc=f"{name} fine-tune epoch {epoch}"):
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=tagger.bf16):
                logits = model(*collate(tokens["train"], batch))
            loss = sum(F.cross_entropy(logits[h].float(), torch.from_numpy(y["train"][h][batch])) for h in spec.heads)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(loss.item())
        probs = tagger.proba(tokens["valid"])
        f1 = valid_f1(probs)
        history.append({"epoch": epoch, "train_loss": round(float(np.mean(losses)), 4), "valid_macro_f1": round(f1, 2)})
        log(f"[{name} finetuned] epoch {epoch}: train loss {history[-1]['train_loss']}, valid macro-F1 {f1:.2f}")
        if best is None or f1 > best[0]:
            best = (f1, epoch, {k: v.detach().clone() for k, v in model.state_dict().items()}, probs)
        elif epoch - best[1] >= cfg.patience:
            break
    _, best_epoch, weights, valid_probs = best
    model.load_state_dict(weights)
    model.eval()
    test_probs = tagger.proba(tokens["test"])
    heads = {h: {split: scores(np.asarray(splits[split][h]), np.asarray(HEADS[h], dtype=object)[probs[h].argmax(1)],
                               HEADS[h])
                 for split, probs in (("valid", valid_probs), ("test", test_probs))} for h in spec.heads}
    metrics = {"hparams": hparams, "precision": precision_report(tagger.bf16, "cpu"),
               "examples_seen": len(history) * epoch_size, "epochs": history, "best_epoch": best_epoch, "heads": heads}
    return tagger, metrics
