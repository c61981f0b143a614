"""Emotion-enhanced context-context matching (paper section 3.3, Eq. 8): the source of control signals at inference.

The pool is every training example. A query context is scored against every pool context by

    Score = cos(semantic embeddings) + gamma * cos(emotion distributions)

and the responses of the top-k pool contexts supply the control signals. Search is exact: one matrix product per chunk of
queries against the whole pool (40k x 384 fits in memory), top-k with ties broken towards the lower pool row, and never a
candidate from the query's own conversation.
"""
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import PipelineError
from pipeline.io import load_npy, read_frame, save_npy, write_frame
from pipeline.labels import EMOTIONS, MECHANISMS
from pipeline.metrics.control import f1, sf_overlap
from pipeline.schemas import CANDIDATES, CONTROL_NAMES, CONTROLS


@dataclass(frozen=True)
class RetrieveParams:
    """params.yaml `retrieve`: candidates per query, and queries per matrix product against the pool."""

    k: int
    chunk: int


def l2_normalise(x: np.ndarray, what: str) -> np.ndarray:
    """Rows of `x` [n, d] scaled to unit length (float32). A zero row has no direction: that is an input error."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True) if x.ndim == 2 else None  # [n, 1]
    if norms is None or not np.all(np.isfinite(x)) or np.any(norms == 0):
        raise PipelineError(f"{what}: expected finite, non-zero vectors [n, d]; rebuild the stage that wrote them")
    return x / norms


def emotion_matrix(probs) -> np.ndarray:
    """Stack per-example 32-way emotion distributions (order pipeline.labels.EMOTIONS) into unit rows [n, 32]."""
    rows = [np.asarray(p, dtype=np.float32) for p in probs]
    if any(len(p) != len(EMOTIONS) for p in rows):
        raise PipelineError(f"emotion_probs must have {len(EMOTIONS)} entries (pipeline.labels.EMOTIONS): rerun `dvc repro tag`")
    return l2_normalise(np.stack(rows) if rows else np.zeros((0, len(EMOTIONS)), np.float32), "emotion_probs")


@dataclass
class Index:
    """The candidate pool: the CONTROLS rows of the training split and their context vectors (row i = pool row i)."""

    pool: pd.DataFrame  # CONTROLS columns
    semantic: np.ndarray  # [N, 384] float32, unit rows: MiniLM embedding of the context
    emotion: np.ndarray  # [N, 32] float32, unit rows: the emotion tagger's distribution for the context

    @classmethod
    def build(cls, pool: pd.DataFrame, semantic: np.ndarray) -> "Index":
        """`pool`: CONTROLS rows (the training split); `semantic` [N, 384]: their context embeddings, same order."""
        if len(pool) == 0:
            raise PipelineError("the retrieval pool is empty: controls.parquet has no train rows; rerun `dvc repro controls`")
        if len(semantic) != len(pool):
            raise PipelineError(f"{len(semantic)} context vectors for {len(pool)} pool rows")
        pool = pool.reset_index(drop=True)
        return cls(pool, l2_normalise(semantic, "context embeddings"), emotion_matrix(pool["emotion_probs"]))

    def save(self, folder) -> None:
        folder = Path(folder)
        write_frame(folder / "pool.parquet", self.pool, CONTROLS)
        save_npy(folder / "semantic.npy", self.semantic)
        save_npy(folder / "emotion.npy", self.emotion)

    @classmethod
    def load(cls, folder) -> "Index":
        folder = Path(folder)
        pool = read_frame(folder / "pool.parquet", CONTROLS, stage="build_index")
        semantic = load_npy(folder / "semantic.npy", stage="build_index")
        emotion = load_npy(folder / "emotion.npy", stage="build_index")
        if not len(pool) == len(semantic) == len(emotion):
            raise PipelineError(f"{folder}: pool, semantic and emotion rows differ: rerun `dvc repro build_index`")
        return cls(pool, semantic, emotion)


@dataclass
class Hits:
    """Search results in long form, ordered by query then rank: hit j is pool row `pool[j]` at `rank[j]` for `query[j]`."""

    query: np.ndarray  # [M] int64, row of the query
    pool: np.ndarray  # [M] int64, row of the pool
    rank: np.ndarray  # [M] int64, 0 = best
    score: np.ndarray  # [M] float32

    def top1(self) -> "Hits":
        keep = self.rank == 0
        return Hits(self.query[keep], self.pool[keep], self.rank[keep], self.score[keep])


def top_k(scores: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The k best columns of each row of `scores` [B, N], best first; equal scores go to the lower column; -inf is never
    returned (so a row may get fewer than k). Returns (row, col, rank), each [M], ordered by row then rank."""
    n = scores.shape[1]
    k = min(k, n)
    if k <= 0 or scores.size == 0:
        empty = np.zeros(0, np.int64)
        return empty, empty, empty
    kth = np.partition(scores, n - k, axis=1)[:, n - k]  # [B] the k-th best score of each row
    # Every column at least as good as the k-th best: k of them, or more when there are ties at the k-th score.
    row, col = np.nonzero((scores >= kth[:, None]) & np.isfinite(scores))
    order = np.lexsort((col, -scores[row, col], row))  # by row, then score descending, then column
    row, col = row[order], col[order]
    rank = np.arange(len(row)) - np.searchsorted(row, row)  # position within the row's run
    keep = rank < k
    return row[keep], col[keep], rank[keep]


def search(index: Index, semantic: np.ndarray, emotion: np.ndarray, conv_ids, k: int, gamma: float,
           chunk: int = 1024) -> Hits:
    """Top-k pool rows for each query by Score = cos_sem + gamma * cos_emo.

    semantic [Q, 384] and emotion [Q, 32]: the queries' vectors (normalised here); conv_ids [Q]: each query's conversation
    (None for a new dialogue), whose pool rows are never returned.
    """
    semantic = l2_normalise(semantic, "query context embeddings")
    emotion = l2_normalise(emotion, "query emotion_probs")
    convs = pd.Index(index.pool["conv_id"].unique())
    pool_conv = convs.get_indexer(index.pool["conv_id"])  # [N] conversation code of each pool row
    query_conv = convs.get_indexer(pd.Series(conv_ids, dtype=object))  # [Q] -1 where the conversation is not in the pool
    # One product on concatenated features, [q_sem, gamma q_emo] . [p_sem, p_emo] = Eq. 8: a separate product over the
    # 32 emotion columns costs more than the 384 semantic ones.
    queries = np.concatenate([semantic, np.float32(gamma) * emotion], axis=1)  # [Q, 416]
    keys = np.concatenate([index.semantic, index.emotion], axis=1)  # [N, 416]
    parts = []
    for start in range(0, len(queries), chunk):
        stop = min(start + chunk, len(queries))
        scores = queries[start:stop] @ keys.T  # [B, N]
        scores[query_conv[start:stop, None] == pool_conv[None, :]] = -np.inf
        row, col, rank = top_k(scores, k)
        parts.append((row + start, col, rank, scores[row, col]))
    if not parts:
        return Hits(*(np.zeros(0, np.int64),) * 3, np.zeros(0, np.float32))
    return Hits(*(np.concatenate(p) for p in zip(*parts)))


def candidate_frame(queries: pd.DataFrame, index: Index, hits: Hits) -> pd.DataFrame:
    """CANDIDATES rows: for each hit, the query's id and split and the pool row's response and control fields."""
    q = queries.iloc[hits.query].reset_index(drop=True)
    c = index.pool.iloc[hits.pool].reset_index(drop=True)
    return pd.DataFrame({
        "example_id": q["example_id"], "split": q["split"], "rank": hits.rank, "score": hits.score,
        "cand_example_id": c["example_id"], "cand_response": c["response"],
        **{name: c[name] for name in CONTROL_NAMES},
    })[CANDIDATES.names]


def oracle_frame(queries: pd.DataFrame) -> pd.DataFrame:
    """CANDIDATES rows holding each query's own gold signals: rank 0, score NaN (nothing was scored)."""
    q = queries.reset_index(drop=True)
    return pd.DataFrame({
        "example_id": q["example_id"], "split": q["split"], "rank": 0, "score": np.nan,
        "cand_example_id": q["example_id"], "cand_response": q["response"],
        **{name: q[name] for name in CONTROL_NAMES},
    })[CANDIDATES.names]


def agreement(gold: pd.DataFrame, cand: pd.DataFrame) -> dict[str, float]:
    """How well one candidate per query matches the query's gold signals; `gold` and `cand` are aligned CONTROLS rows.

    emotion_match: share of candidates whose conversation has the query's gold emotion label; cm_<m>: share agreeing on
    mechanism m; intent_first: share with the same first-sentence intent (queries whose response has a sentence);
    sf_f1: mean per-query multiset F1 of the non-null SF tokens (pipeline.metrics.control, as a fraction; queries where
    neither side has a frame are left out), the ceiling retrieved control puts on SF controllability.
    """
    gold, cand = gold.reset_index(drop=True), cand.reset_index(drop=True)
    out = {"emotion_match": float(np.mean(gold["emotion"].to_numpy() == cand["emotion"].to_numpy()))}
    for m in MECHANISMS:
        out[f"cm_{m}"] = float(np.mean(gold[f"cm_{m}"].to_numpy() == cand[f"cm_{m}"].to_numpy()))
    first = [(g[0], c[0] if len(c) else None) for g, c in zip(gold["intents"], cand["intents"]) if len(g)]
    out["intent_first"] = float(np.mean([g == c for g, c in first])) if first else float("nan")
    sf = [f1(*sf_overlap(c, g)) / 100 for g, c in zip(gold["sf"], cand["sf"])]
    sf = [x for x in sf if not math.isnan(x)]
    out["sf_f1"] = float(np.mean(sf)) if sf else float("nan")
    return out


def evaluate(index: Index, queries: pd.DataFrame, semantic: np.ndarray, emotion: np.ndarray, gamma: float,
             rng: np.random.Generator) -> dict[str, dict[str, float]]:
    """`agreement` of the top-1 candidate with the gold signals of `queries` (CONTROLS rows; vectors as for `search`),
    side by side: emotion-enhanced (`gamma`), semantic only (gamma = 0), and a uniformly random pool row (the floor)."""
    out = {}
    for name, g in (("emotion_enhanced", gamma), ("semantic_only", 0.0)):
        hits = search(index, semantic, emotion, queries["conv_id"], k=1, gamma=g)
        out[name] = agreement(queries.iloc[hits.query], index.pool.iloc[hits.pool])
    out["random"] = agreement(queries, index.pool.iloc[rng.integers(len(index.pool), size=len(queries))])
    return out
