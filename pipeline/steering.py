"""The steering benchmark: is one control level, given alone, followed? (docs/diffusion.md, "Controls that steer").

For each scored example (its first retrieved candidate, which lends only its length) the default decoder answers the
context several times: once with nothing given (`base`: the model chooses freely) and once per request, each given
alone (pipeline.respond.Overrides without a candidate, so every other level is freed):
- cm_<m>: the mechanism m present, the other two absent;
- it_<intent>: a one-sentence response with that intent.
The outputs are re-tagged by the score stage's taggers (CM with tag.cm_threshold; intents per sentence of
pipeline.segment) and, per request:
- adherence: the share of outputs with the requested mechanism present (CM), or whose first sentence has the
  requested intent (IT), x 100;
- base_rate: the same share among the `base` outputs of the same examples; low / high: the paired bootstrap 95%
  interval of adherence - base_rate over the examples;
- exact (CM only): the share whose three mechanisms are all as requested, x 100;
- fluency_ppl (SmolLM2, the fluency metric's model) and bertscore (F1 against the gold response, MiniLM: the score
  stage's BERTScore) of the steered outputs; `human`: the gold responses' fluency_ppl on the same examples (the
  reference of the guidance sweep's fluency bar).
"""
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from pipeline.bootstrap import interval
from pipeline.embeddings import context_text
from pipeline.errors import PipelineError
from pipeline.labels import INTENTS, MECHANISMS
from pipeline.metrics.relevance import BertScore, FluencyScorer, fluency_ppl
from pipeline.respond import Overrides
from pipeline.segment import segment_texts
from pipeline.tagging import Taggers

BASE = "base"

# data/steering/outputs.parquet: one row per (request, example), BASE included. Declared here, beside the only code that
# writes it, for the reason scoring.SCORE_LABELS gives.
STEERING_OUTPUTS = pa.schema([
    ("request", pa.string()),
    ("example_id", pa.string()),
    ("control_sequence", pa.string()),  # the levels given (empty for the base)
    ("text", pa.string()),
])


@dataclass(frozen=True)
class SteeringParams:
    """params.yaml `steering`: subset: the test examples (seeded as stage sample's subset, each with its first
    candidate's length); intents: those requested (each alone); resamples: the bootstrap resamples of the intervals.
    The decoding is the `sample` section's, as stage sample runs it."""

    subset: int
    intents: tuple[str, ...]
    resamples: int


def requests(intents: Sequence[str]) -> dict[str, Overrides]:
    """Request name -> the hand-set level it gives alone: cm_er, cm_ip, cm_ex, then it_<intent> per intent."""
    bad = [i for i in intents if i not in INTENTS]
    if bad:
        raise PipelineError(f"params.yaml `steering.intents`: unknown {bad} (valid: {', '.join(INTENTS)})")
    return {**{f"cm_{m}": Overrides(cm=frozenset({m})) for m in MECHANISMS},
            **{f"it_{i}": Overrides(intents=(i,)) for i in intents}}


def request_rows(rows: Sequence[Mapping], overrides: Overrides) -> list[dict]:
    """The scored examples' control rows (with `context`) with one request given alone (Overrides() = nothing given:
    the base); each row keeps its candidate's length."""
    return [{**overrides.apply(r, candidate=False), "context": r["context"], "example_id": r["example_id"]}
            for r in rows]


def followed(name: str, cm_tagged: np.ndarray, intents: Sequence[Sequence[str]]) -> np.ndarray:
    """Whether each output follows request `name` -> bool [N]. cm_tagged: bool [N, 3] (MECHANISMS columns); intents:
    the re-tagged intents of each output's sentences."""
    kind, label = name.split("_", 1)
    if kind == "cm":
        return cm_tagged[:, MECHANISMS.index(label)].copy()
    return np.array([len(i) > 0 and i[0] == label for i in intents], dtype=bool)


@dataclass
class Judges:
    """The models that read the outputs: cm (contexts, texts) -> bool [N, 3] re-tagged CM; intents: texts -> the
    intent of each sentence; fluency_nll: texts -> mean NLL per text [N]; bertscore: (texts, references) -> F1 [N]."""

    cm: Callable[[list[list[str]], list[str]], np.ndarray]
    intents: Callable[[list[str]], list[list[str]]]
    fluency_nll: Callable[[list[str]], np.ndarray]
    bertscore: Callable[[list[str], list[str]], np.ndarray]

    @classmethod
    def load(cls, taggers: str, cm_threshold: float) -> "Judges":
        """The score stage's judges: its taggers in the folder `taggers` (a mechanism is present above cm_threshold;
        intents per sentence of pipeline.segment), SmolLM2's fluency and BERTScore."""
        tagger = Taggers.load(taggers, names=("cm", "intent"))
        return cls(cm=lambda ctx, texts: tagger.mechanisms([context_text(c) for c in ctx], texts) > cm_threshold,
                   intents=lambda texts: tagger.intents(texts, segment_texts(texts)),
                   fluency_nll=FluencyScorer.load().nll, bertscore=BertScore())


def steering_report(outputs: Mapping[str, list[str]], contexts: list[list[str]], references: list[str],
                    judges: Judges, resamples: int, seed: int) -> dict:
    """outputs: request name (and BASE) -> one text per example, all on the same examples; contexts / references:
    those examples' contexts and gold responses -> {"examples", "human": {fluency_ppl}, "base": {fluency_ppl,
    bertscore}, "requests": {name: {adherence, base_rate, low, high, [exact,] fluency_ppl, bertscore}}}; shares x 100,
    rounded to 2 decimals (BERTScore 4)."""
    tagged = {name: (judges.cm(contexts, texts), judges.intents(texts)) for name, texts in outputs.items()}
    base_cm, base_it = tagged[BASE]
    report = {"examples": len(contexts),
              "human": {"fluency_ppl": round(fluency_ppl(judges.fluency_nll(references)), 2)},
              "base": {"fluency_ppl": round(fluency_ppl(judges.fluency_nll(outputs[BASE])), 2),
                       "bertscore": round(float(np.mean(judges.bertscore(outputs[BASE], references))), 4)},
              "requests": {}}
    for name, texts in outputs.items():
        if name == BASE:
            continue
        cm, it = tagged[name]
        hit, base = followed(name, cm, it), followed(name, base_cm, base_it)
        diff = interval(hit.astype(float) - base.astype(float), resamples, seed)
        row = {"adherence": round(100 * hit.mean(), 2), "base_rate": round(100 * base.mean(), 2),
               "low": round(100 * diff["low"], 2), "high": round(100 * diff["high"], 2)}
        if name.startswith("cm_"):
            want = np.array([m == name[3:] for m in MECHANISMS])
            row["exact"] = round(100 * float((cm == want).all(1).mean()), 2)
        row["fluency_ppl"] = round(fluency_ppl(judges.fluency_nll(texts)), 2)
        row["bertscore"] = round(float(np.mean(judges.bertscore(texts, references))), 4)
        report["requests"][name] = row
    return report
