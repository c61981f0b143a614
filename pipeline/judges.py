"""The models that rerank several draws per control row (`pipeline.rerank.Judges`), loaded for a rule.

- fluency: SmolLM2, the fluency metric's own scorer (`pipeline.metrics.relevance.FluencyScorer`);
- controls: `ControlAgreement`, the draw re-tagged by the CM and intent taggers of stage `score` and compared with the
  controls it was given, as ACC-CM and ACC-IT compare them (`pipeline.metrics.control`); SmolLM2 breaks its ties.
- relevance: SmolLM2 and `context_relevance`, the cosine of the draw's and the context's MiniLM sentence embeddings
  (the encoder of retrieval, and the model under BERTScore, which compares tokens with the gold response instead).
Each rule optimises what a column of the score table reads: say so next to the figures of a reranked system.
"""
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from pipeline.embeddings import context_text, encode_texts
from pipeline.labels import SIGNALS
from pipeline.metrics.control import CM_COLUMNS, cm_matches, intent_positions
from pipeline.metrics.relevance import FluencyScorer
from pipeline.rerank import FLUENT, Judges
from pipeline.segment import segment_texts
from pipeline.tagging import Taggers


def agreement(cm_ok: np.ndarray, it: np.ndarray) -> np.ndarray:
    """cm_ok: bool [N, 3] (`cm_matches`), it: [N, (matched, counted)] intent positions (`intent_matches`) -> [N]: the
    mean of the share of mechanisms matched and the share of intent positions matched (1 when none is counted)."""
    it_share = np.where(it[:, 1] > 0, it[:, 0] / np.maximum(it[:, 1], 1), 1.0)
    return (cm_ok.mean(axis=1) + it_share) / 2


class ControlAgreement:
    """(control rows with `context`, cm_er/cm_ip/cm_ex and `intents`; one text per row) -> `agreement` [N]."""

    def __init__(self, taggers: Taggers, cm_threshold: float,
                 segment: Callable[[list[str]], list[dict]] = segment_texts):
        self.taggers, self.cm_threshold, self.segment = taggers, cm_threshold, segment

    @classmethod
    def load(cls, taggers_dir, cm_threshold: float) -> "ControlAgreement":
        """With the cm and intent taggers of taggers_dir (cm_threshold: params.yaml `tag.cm_threshold`)."""
        return cls(Taggers.load(taggers_dir, names=("cm", "intent")), cm_threshold)

    def check(self, rows: Sequence[Mapping], texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """-> (cm_ok bool [N, 3], intent positions [N, (matched, counted)]) of each text against its row's controls.
        A level the row does not give (its `given` key: inputs.encode_example) constrains nothing: its CM counts as
        matched, its intents as none counted."""
        tagged = self.taggers.mechanisms([context_text(r["context"]) for r in rows], texts) > self.cm_threshold
        control = np.array([[bool(r[c]) for c in CM_COLUMNS] for r in rows], dtype=bool).reshape(-1, 3)
        intents = self.taggers.intents(texts, self.segment(texts))
        given = [set(r.get("given", SIGNALS)) for r in rows]
        cm_ok = cm_matches(tagged, control) | ~np.array([["cm" in g] * 3 for g in given], dtype=bool).reshape(-1, 3)
        it = intent_positions(intents, [r["intents"] for r in rows])
        it[[i for i, g in enumerate(given) if "it" not in g]] = 0  # (matched, counted) = (0, 0): no constraint
        return cm_ok, it

    def __call__(self, rows: Sequence[Mapping], texts: list[str]) -> np.ndarray:
        return agreement(*self.check(rows, texts))


def context_relevance(rows: Sequence[Mapping], texts: list[str]) -> np.ndarray:
    """(control rows with `context`, one text per row) -> cosine of each text's and its row's context's MiniLM sentence
    embeddings [N] (pipeline.embeddings.encode_texts; each distinct text or context encoded once)."""
    contexts = [context_text(r["context"]) for r in rows]
    distinct = list(dict.fromkeys([*texts, *contexts]))
    vectors = encode_texts(distinct)  # [n_distinct, 384], L2-normalised
    row = {t: i for i, t in enumerate(distinct)}
    return np.einsum("nd,nd->n", vectors[[row[t] for t in texts]], vectors[[row[c] for c in contexts]])


def load_judges(rule: str, taggers_dir, cm_threshold: float) -> Judges:
    """The models `rule` reads: SmolLM2 for fluency, controls and relevance, the cm and intent taggers of taggers_dir
    for controls (cm_threshold: params.yaml `tag.cm_threshold`, as stage `tag` used), MiniLM for relevance; none for
    none and mbr."""
    fluency_nll = FluencyScorer.load().nll if rule in FLUENT else None
    judge = ControlAgreement.load(taggers_dir, cm_threshold) if rule == "controls" else None
    return Judges(fluency_nll, judge, context_relevance if rule == "relevance" else None)
