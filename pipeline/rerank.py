"""Which of several draws is kept: the rerank rules (pipeline.diffusion.config.RERANKS) and the models they read.

Several draws per control row, or per group of rows (the candidates of one example: their draws compete together),
are reranked by one rule:
- none: the first draw (of the group's first row);
- mbr: the draw with the highest mean similarity to the other draws (similarity: `overlap`, the mean of the unigram
  and bigram F1 of lower-cased whitespace tokens, a cheap stand-in for DiffuSeq's BLEU-based MBR);
- fluency: the draw that a language model finds most probable per token (stage `sample` uses SmolLM2,
  `pipeline.metrics.relevance.FluencyScorer`, the scorer of the fluency metric itself);
- controls: the draw whose re-tagged CM and intents agree best with the controls it was given (the taggers of stage
  `score`, `pipeline.judges.ControlAgreement`), the most fluent of those on ties;
- relevance: the draw that is both fluent and about the context: the highest z(-NLL) + RELEVANCE_WEIGHT x
  z(relevance) over the draws that compete, relevance being the cosine of the draw's and the context's sentence
  embeddings (stage `sample` uses MiniLM, `pipeline.judges.context_relevance`).
The caller supplies the models a rule reads (`Judges`; `pipeline.judges.load_judges` loads them), so this module
imports no tagger or language model.
"""
from collections import Counter
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.diffusion.config import RERANKS
from pipeline.errors import PipelineError
from pipeline.metrics.diversity import ngrams

RELEVANCE_WEIGHT = 1.0  # rule relevance: of the relevance z-score against fluency's (docs/diffusion.md)
FLUENT = ("fluency", "controls", "relevance")  # the rules that read the language model
FluencyNLL = Callable[[list[str]], np.ndarray]  # texts -> mean NLL per token of each [N], NaN for an empty text
# (control rows, one text per row) -> agreement of each text with its row's controls [N], in [0, 1]
Agreement = Callable[[Sequence[Mapping], list[str]], np.ndarray]
# (control rows with `context`, one text per row) -> relevance of each text to its row's context [N] (higher: more)
Relevance = Callable[[Sequence[Mapping], list[str]], np.ndarray]


@dataclass(frozen=True)
class Judges:
    """The models the rerank rules read (None: not loaded). fluency_nll: rules fluency, controls (its tie-break) and
    relevance; agreement: rule controls; relevance: rule relevance."""

    fluency_nll: FluencyNLL | None = None
    agreement: Agreement | None = None
    relevance: Relevance | None = None

    def check(self, rule: str) -> None:
        """Raise if `rule` needs a model that is missing."""
        if rule in FLUENT and self.fluency_nll is None:
            raise PipelineError(f"sample.rerank {rule} needs a language model to score the draws (fluency_nll)")
        if rule == "controls" and self.agreement is None:
            raise PipelineError("sample.rerank controls needs the taggers to re-tag the draws (agreement)")
        if rule == "relevance" and self.relevance is None:
            raise PipelineError("sample.rerank relevance needs a sentence encoder to compare draws and contexts")


@dataclass(frozen=True)
class Scores:
    """What the judges say of every draw of every row, [draws, rows] each (None: not read): nll (mean NLL per token,
    NaN for an empty text), agreement with the row's controls, relevance to the row's context."""

    nll: np.ndarray | None = None
    agreement: np.ndarray | None = None
    relevance: np.ndarray | None = None


def score(texts: np.ndarray, rows: Sequence[Mapping], rules: Collection[str], judges: Judges) -> Scores:
    """texts: object [draws, rows] drawn for the control rows `rows` -> the Scores that `rules` read, each model
    called once on every text (draw-major)."""
    n, flat = texts.shape[0], texts.ravel().tolist()
    nll = judges.fluency_nll(flat).reshape(texts.shape) if set(rules) & set(FLUENT) else None
    agreement = judges.agreement(list(rows) * n, flat).reshape(texts.shape) if "controls" in rules else None
    relevance = judges.relevance(list(rows) * n, flat).reshape(texts.shape) if "relevance" in rules else None
    return Scores(nll, agreement, relevance)


def overlap(a: str, b: str) -> float:
    """Mean of the unigram and bigram multiset F1 of two texts (lower-cased, whitespace tokens), over the orders that
    either text has n-grams of; 1 for two empty texts."""
    ta, tb = a.lower().split(), b.lower().split()
    scores = []
    for n in (1, 2):
        x, y = Counter(ngrams(ta, n)), Counter(ngrams(tb, n))
        total = sum(x.values()) + sum(y.values())
        if total:
            scores.append(2 * sum((x & y).values()) / total)
    return sum(scores) / len(scores) if scores else 1.0


def mbr_pick(texts: Sequence[str]) -> int:
    """Index of the text with the highest mean `overlap` with the others (the first on ties; 0 for one text)."""
    if len(texts) < 2:
        return 0
    means = [sum(overlap(t, u) for j, u in enumerate(texts) if j != i) / (len(texts) - 1) for i, t in enumerate(texts)]
    return max(range(len(texts)), key=lambda i: (means[i], -i))


def fluency_pick(nll: np.ndarray) -> np.ndarray:
    """nll: mean NLL per token of each draw of each row [draws, rows], NaN for an empty text -> for each row the index
    of the draw with the lowest NLL [rows] (the first on ties; an empty draw only when every draw is empty)."""
    return np.where(np.isnan(nll), np.inf, nll).argmin(axis=0)


def controls_pick(agreement: np.ndarray, nll: np.ndarray) -> np.ndarray:
    """agreement [draws, rows] (higher: the draw keeps more of its controls), nll [draws, rows] as in `fluency_pick`
    -> for each row the index of the draw with the highest agreement, the lowest NLL among those, the first on ties."""
    nll = np.where(np.isnan(nll), np.inf, nll)
    return np.array([min(range(len(a)), key=lambda d: (-a[d], n[d], d)) for a, n in zip(agreement.T, nll.T)], dtype=int)


def standardise(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Each column of x [draws, rows] standardised over its valid entries (valid [draws, rows], at least one per
    column); a column with no spread gives 0; invalid entries give NaN."""
    v = np.where(valid, x, np.nan)
    mean, std = np.nanmean(v, axis=0), np.nanstd(v, axis=0)
    return (v - mean) / np.where(std > 0, std, 1.0)


def relevance_pick(nll: np.ndarray, relevance: np.ndarray, weight: float = RELEVANCE_WEIGHT) -> np.ndarray:
    """nll [draws, rows] as in `fluency_pick`, relevance [draws, rows] (higher: more about the context) -> for each row
    the index of the draw with the highest z(-nll) + weight x z(relevance), both standardised over the row's non-empty
    draws (the first on ties; an empty draw only when every draw is empty)."""
    text = ~np.isnan(nll)
    out = np.zeros(nll.shape[1], dtype=int)
    rows = text.any(axis=0)  # rows with at least one non-empty draw
    if rows.any():
        t = text[:, rows]
        score = -standardise(nll[:, rows], t) + weight * standardise(relevance[:, rows], t)
        out[rows] = np.where(t, score, -np.inf).argmax(axis=0)
    return out


def pick(rule: str, draws: list[list[str]], scores: Scores, eligible: np.ndarray | None = None) -> np.ndarray:
    """The draw kept for each row by `rule` (RERANKS) -> indices [rows]. draws: texts [draws][rows]; scores: what the
    judges say of them (nll: rules fluency, controls, relevance; agreement: rule controls; relevance: rule relevance);
    eligible: bool [draws, rows], at least one per row (default: all): a rule keeps an ineligible draw only when no
    eligible one has a text."""
    if eligible is None:
        eligible = np.ones((len(draws), len(draws[0])), dtype=bool)
    nll = None if scores.nll is None else np.where(eligible, scores.nll, np.nan)  # scored as an empty draw
    agreement = None if scores.agreement is None else np.where(eligible, scores.agreement, -np.inf)
    if rule == "none":
        return eligible.argmax(axis=0)
    if rule == "mbr":
        options = [np.flatnonzero(column) for column in eligible.T]
        return np.array([o[mbr_pick([draws[d][i] for d in o])] for i, o in enumerate(options)], dtype=int)
    if rule == "fluency":
        return fluency_pick(nll)
    if rule == "controls":
        return controls_pick(agreement, nll)
    if rule == "relevance":
        return relevance_pick(nll, scores.relevance)
    raise PipelineError(f"unknown sample.rerank {rule!r}: use one of {', '.join(RERANKS)}")


def pooled(matrix: np.ndarray, group: int) -> np.ndarray:
    """[draws, rows] -> [group x draws, rows / group]: each column holds every draw of a group of `group` consecutive
    rows, option o being draw o % draws of the group's row o // draws (the first row's draws first)."""
    draws, rows = matrix.shape
    return matrix.reshape(draws, rows // group, group).transpose(2, 0, 1).reshape(group * draws, rows // group)


def pick_pooled(rule: str, texts: np.ndarray, scores: Scores, group: int, whole: np.ndarray) -> list[tuple[int, int]]:
    """texts: object [draws, rows]; scores: [draws, rows] as `pick` reads them; whole: bool [rows]
    (`pipeline.diffusion.generate.complete`) -> for each group of `group` consecutive rows, the (row, draw) that `rule`
    keeps among all the group's draws, those of a row that is not whole only when no row of the group is."""
    n = texts.shape[0]
    eligible = pooled(np.tile(np.asarray(whole, dtype=bool), (n, 1)), group)  # [group x n, rows / group]
    eligible |= ~eligible.any(axis=0)
    pooled_scores = Scores(*(None if m is None else pooled(m, group)
                             for m in (scores.nll, scores.agreement, scores.relevance)))
    kept = pick(rule, pooled(texts, group).tolist(), pooled_scores, eligible)
    return [(g * group + o // n, o % n) for g, o in enumerate(kept)]


def rerank(draws: list[list[str]], rows: Sequence[Mapping], rule: str, judges: Judges = Judges(),
           group: int = 1, whole: np.ndarray | None = None) -> list[tuple[int, int]]:
    """The text kept by `rule` (RERANKS) with the models in `judges` (each called once, on every draw of every row) out
    of draws [num_samples][rows] of the control rows `rows`, for each group of `group` consecutive rows (1: each row
    alone; the candidates of an example: `pipeline.subset.group_size`) -> (row, draw) of the kept text, per group
    [rows / group]. whole: bool [rows] (`complete`): in a group with a whole row, the draws of cut rows are not kept."""
    judges.check(rule)
    if len(rows) % group:
        raise PipelineError(f"{len(rows)} control rows do not split into groups of {group}")
    n, shape = len(draws), (len(draws), len(rows))
    texts = np.array([t for d in draws for t in d], dtype=object).reshape(shape)
    whole = np.ones(len(rows), dtype=bool) if whole is None else whole
    if rule == "none" or n * group == 1:
        return pick_pooled("none", texts, Scores(), group, whole)
    return pick_pooled(rule, texts, score(texts, rows, (rule,), judges), group, whole)
