"""TRS: a vanilla transformer encoder-decoder trained from scratch with MLE on ED's (context, response) pairs.

Text is MiniLM's BERT-uncased WordPiece (pipeline.models.wordpiece_tokenizer), one table of 30,522 embeddings shared by
the encoder, the decoder and the output layer. Source: the context turns joined by [SEP], its newest `max_source`
WordPieces. Target: [CLS] response [SEP], the response cut to its first `max_response` WordPieces; [CLS] starts
decoding and [SEP] ends it. Pre-norm layers (nn.Transformer with norm_first), learned positions.
"""
import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pipeline.baselines.store import atomic_dir
from pipeline.errors import PipelineError
from pipeline.io import write_json

PAD, START, END = 0, 101, 102  # [PAD], [CLS], [SEP] of the BERT-uncased vocabulary


@dataclass(frozen=True)
class TRSParams:
    """params.yaml `baselines.trs`: the architecture (each of encoder and decoder has `layers` layers) and the token
    budgets of a pair."""

    width: int
    heads: int
    layers: int
    ffn: int
    dropout: float
    max_source: int
    max_response: int


class Seq2Seq(nn.Module):
    def __init__(self, cfg: TRSParams, vocab_size: int):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(vocab_size, cfg.width, padding_idx=PAD)
        nn.init.normal_(self.embed.weight, std=cfg.width ** -0.5)  # x sqrt(width) in: unit scale; out: unit logits
        self.position = nn.Embedding(max(cfg.max_source, cfg.max_response + 2), cfg.width)
        self.transformer = nn.Transformer(cfg.width, cfg.heads, cfg.layers, cfg.layers, cfg.ffn, cfg.dropout,
                                          batch_first=True, norm_first=True)

    def tokens(self, ids: torch.Tensor) -> torch.Tensor:
        """ids [B, T] -> [B, T, width]: scaled token embeddings plus positions."""
        positions = torch.arange(ids.shape[1], device=ids.device)
        return self.embed(ids) * math.sqrt(self.cfg.width) + self.position(positions)

    def encode(self, source: torch.Tensor) -> torch.Tensor:
        """source [B, S] -> memory [B, S, width]."""
        return self.transformer.encoder(self.tokens(source), src_key_padding_mask=source == PAD)

    def decode(self, memory: torch.Tensor, source: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """target [B, T] (starting with START) -> next-token logits [B, T, V] (the output layer is the embedding)."""
        causal = nn.Transformer.generate_square_subsequent_mask(target.shape[1], device=target.device)
        hidden = self.transformer.decoder(self.tokens(target), memory, tgt_mask=causal, tgt_is_causal=True,
                                          tgt_key_padding_mask=target == PAD,
                                          memory_key_padding_mask=source == PAD)
        return hidden @ self.embed.weight.T


def encode_pair(tokenizer, context: Sequence[str], response: str | None, cfg: TRSParams) -> tuple[list[int], list[int]]:
    """-> (source ids, [START] + response ids + [END]); response None (inference) -> (source ids, [])."""
    turns = [tokenizer(t, add_special_tokens=False).input_ids for t in context]
    source = [i for k, t in enumerate(turns) for i in ([END] if k else []) + t][-cfg.max_source:]
    if response is None:
        return source, []
    return source, [START, *tokenizer(response, add_special_tokens=False).input_ids[:cfg.max_response], END]


def padded(rows: Sequence[Sequence[int]]) -> torch.Tensor:
    """Right-padded with PAD -> long [B, max length]."""
    width = max(map(len, rows))
    return torch.tensor([list(r) + [PAD] * (width - len(r)) for r in rows])


def mle_loss(model: Seq2Seq, pairs: Sequence[tuple[list[int], list[int]]]) -> torch.Tensor:
    """Mean cross-entropy of every target token after START (END included) given the source and the tokens before."""
    source, target = padded([s for s, _ in pairs]), padded([t for _, t in pairs])
    logits = model.decode(model.encode(source), source, target[:, :-1])  # [B, T-1, V]
    return F.cross_entropy(logits.float().transpose(1, 2), target[:, 1:], ignore_index=PAD)


def pair_lengths(pairs: Sequence[tuple[list[int], list[int]]]) -> np.ndarray:
    return np.array([len(s) + len(t) for s, t in pairs])


def save_trs(out_dir, model: Seq2Seq) -> None:
    """out_dir/{model.pt (state dict), baseline.json (params, vocabulary size)}, written whole."""
    with atomic_dir(out_dir) as tmp:
        with open(tmp / "model.pt", "wb") as f:
            torch.save(model.state_dict(), f)
        write_json(tmp / "baseline.json", {"kind": "seq2seq", "params": asdict(model.cfg),
                                           "vocab_size": model.embed.num_embeddings})


def load_trs(model_dir) -> Seq2Seq:
    meta_path = Path(model_dir) / "baseline.json"
    if not meta_path.exists():
        raise PipelineError(f"{model_dir} is not a trained TRS baseline: run `make baselines`")
    meta = json.loads(meta_path.read_text())
    model = Seq2Seq(TRSParams(**meta["params"]), meta["vocab_size"])
    model.load_state_dict(torch.load(Path(model_dir) / "model.pt", map_location="cpu", weights_only=True))
    return model.eval()
