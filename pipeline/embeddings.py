"""MiniLM sentence embeddings: how a text becomes one encoder input, batched encoding, and the shared store.

The store (data/embeddings/) holds every distinct ED text that later stages embed (contexts, responses, response
sentences), encoded once: texts.parquet (column `text`, schema EMBEDDING_TEXTS) and vectors.npy (float32 [N, 384],
L2-normalised), row i of one belonging to row i of the other.
"""
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.io import load_npy, read_table, save_npy, write_table
from pipeline.models import ENCODER_DIM, sentence_encoder
from pipeline.progress import log, progress
from pipeline.schemas import EMBEDDING_TEXTS


@dataclass(frozen=True)
class EncodeParams:
    """params.yaml `encode`: MiniLM batch size and the WordPiece length past which texts are truncated."""

    batch_size: int
    max_seq_length: int


def context_text(context: Sequence[str]) -> str:
    """THE way a dialogue context (utterances, oldest first) becomes one encoder input: utterances joined by a space.

    Chronological order keeps the text natural for MiniLM; ED contexts are short, so the encoder's right-side truncation
    rarely cuts the latest utterance (`encode` logs how many texts were truncated).
    """
    return " ".join(u.strip() for u in context)


def sentence_texts(response: str, sent_starts: Sequence[int], sent_ends: Sequence[int]) -> list[str]:
    """The sentences of `response` cut at its [start, end) character spans (pipeline.segment)."""
    return [response[s:e] for s, e in zip(sent_starts, sent_ends)]


def align_segments(dialogues: pd.DataFrame, segments: pd.DataFrame) -> pd.DataFrame:
    """The segments (schema SEGMENTS) of the dialogues rows (schema DIALOGUES), in dialogues order, by example_id."""
    spans = segments.set_index("example_id").reindex(dialogues["example_id"])
    if spans["sent_starts"].isna().any():
        raise PipelineError("segments.parquet does not cover every dialogues row: rebuild it with `dvc repro segment`")
    return spans


def ed_texts(dialogues: pd.DataFrame, segments: pd.DataFrame) -> list[str]:
    """Every distinct context text, response and response sentence of ED, in first-seen order.

    dialogues: schema DIALOGUES; segments: schema SEGMENTS (joined on example_id, one row per dialogues row).
    """
    spans = align_segments(dialogues, segments)
    texts = dict.fromkeys(context_text(c) for c in dialogues["context"])
    texts.update(dict.fromkeys(dialogues["response"]))
    for response, starts, ends in zip(dialogues["response"], spans["sent_starts"], spans["sent_ends"]):
        texts.update(dict.fromkeys(sentence_texts(response, starts, ends)))
    return list(texts)


def encode_texts(texts: Sequence[str], batch_size: int = 64, max_seq_length: int = 128) -> np.ndarray:
    """Embed `texts` with the frozen MiniLM encoder -> float32 [n, 384], L2-normalised, row i = texts[i].

    Texts are batched longest (in WordPieces) first, so that a batch holds texts of similar length (little padding) and
    the memory peak comes at once. Texts over `max_seq_length` WordPieces are truncated; an empty text gets the
    embedding of [CLS] [SEP].
    """
    if len(texts) == 0:
        return np.empty((0, ENCODER_DIM), dtype=np.float32)
    model = sentence_encoder(max_seq_length)
    pieces = model.tokenizer(list(texts), add_special_tokens=False, verbose=False)["input_ids"]
    n_pieces = np.array([len(ids) for ids in pieces])
    order = np.argsort(-n_pieces, kind="stable")
    out = np.empty((len(texts), ENCODER_DIM), dtype=np.float32)
    batches = [order[i:i + batch_size] for i in range(0, len(texts), batch_size)]
    start = time.monotonic()
    for idx in progress(batches, desc=f"encode (batches of {batch_size})"):
        out[idx] = model.encode([texts[i] for i in idx], batch_size=batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
    elapsed = time.monotonic() - start
    n_long = int((n_pieces > max_seq_length - 2).sum())  # [CLS] and [SEP] take two of the positions
    log(f"[encode] {len(texts)} texts in {elapsed:.0f}s ({len(texts) / max(elapsed, 1e-9):.1f} texts/s); "
        f"{n_long} truncated at {max_seq_length} WordPieces")
    return out


class EmbeddingStore:
    """Read-only lookup of the vectors that stage `encode` wrote under `directory`."""

    def __init__(self, directory):
        self.directory = Path(directory)
        texts = read_table(self.directory / "texts.parquet", EMBEDDING_TEXTS, stage="encode").column("text").to_pylist()
        self.vectors = load_npy(self.directory / "vectors.npy", stage="encode", mmap=True)  # [N, 384]
        if self.vectors.shape != (len(texts), ENCODER_DIM):
            raise PipelineError(f"{self.directory}: {len(texts)} texts but vectors of shape {self.vectors.shape}: "
                                "rebuild it with `dvc repro encode`")
        self.row = {t: i for i, t in enumerate(texts)}

    def lookup(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of `texts` -> float32 [n, 384]. Every text must be in the store."""
        missing = [t for t in texts if t not in self.row]
        if missing:
            raise PipelineError(f"{len(missing)} texts are not in {self.directory} (first: {missing[0][:60]!r}): "
                                "rebuild it with `dvc repro encode`")
        return np.asarray(self.vectors[[self.row[t] for t in texts]], dtype=np.float32).reshape(len(texts), ENCODER_DIM)

    @staticmethod
    def write(directory, texts: Sequence[str], vectors: np.ndarray) -> None:
        """Write a store: texts (distinct) and their vectors [len(texts), 384]."""
        if len(set(texts)) != len(texts) or vectors.shape != (len(texts), ENCODER_DIM):
            raise PipelineError(f"embedding store needs distinct texts and [n, {ENCODER_DIM}] vectors")
        directory = Path(directory)
        save_npy(directory / "vectors.npy", vectors.astype(np.float32))
        write_table(directory / "texts.parquet", pa.table({"text": list(texts)}), EMBEDDING_TEXTS)
