"""Generation from control sources: the sampler's settings (SampleConfig), the test subset every system is scored on,
and batched sampling of responses.

A control source is a row with the query's `context` and a candidate's CONTROL_FIELDS (candidates.parquet in retrieved
or oracle mode): the response takes the candidate's word and sentence structure (see inputs.encode_example). With
strength < 1 the candidate's own response is the starting point (sampler.py). Several draws per row, or per group of
rows (the candidates of one example: their draws compete together), are reranked by one of RERANKS:
- mbr: the draw with the highest mean similarity to the other draws (similarity: `overlap`, the mean of the unigram and
  bigram F1 of lower-cased whitespace tokens, a cheap stand-in for DiffuSeq's BLEU-based MBR);
- fluency: the draw that a language model finds most probable per token (stage `sample` uses SmolLM2,
  `pipeline.metrics.relevance.FluencyScorer`, the scorer of the fluency metric itself);
- controls: the draw whose re-tagged CM and intents agree best with the controls it was given (the taggers of stage
  `score`, `pipeline.judges.ControlAgreement`), the most fluent of those on ties;
- relevance: the draw that is both fluent and about the context: the highest z(-NLL) + RELEVANCE_WEIGHT x
  z(relevance) over the draws that compete, relevance being the cosine of the draw's and the context's sentence embeddings
  (stage `sample` uses MiniLM, `pipeline.judges.ContextRelevance`).
The caller supplies the models a rule reads (`Judges`; `pipeline.judges.load_judges` loads them), so this module
imports no tagger or language model.
"""
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
import dataclasses
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd
import torch

from torch import nn

from pipeline.diffusion.inputs import Role, collate, encode_rows
from pipeline.diffusion.sampler import decode, sample
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.metrics.diversity import ngrams
from pipeline.precision import Bf16, use_bf16
from pipeline.progress import progress

# Which of several draws per row is kept: the first, the MBR choice, the most fluent, the one that keeps its controls,
# or the most fluent and relevant.
RERANKS = ("none", "mbr", "fluency", "controls", "relevance")
RELEVANCE_WEIGHT = 1.0  # rule relevance: of the relevance z-score against fluency's (0.25-2 measured in docs/diffusion.md)
FluencyNLL = Callable[[list[str]], np.ndarray]  # texts -> mean NLL per token of each [N], NaN for an empty text
# (control rows, one text per row) -> agreement of each text with its row's controls [N], in [0, 1]
ControlAgreement = Callable[[Sequence[Mapping], list[str]], np.ndarray]
# (control rows with `context`, one text per row) -> relevance of each text to its row's context [N] (higher: more)
ContextRelevance = Callable[[Sequence[Mapping], list[str]], np.ndarray]


@dataclass(frozen=True)
class Judges:
    """The models the rerank rules read (None: not loaded). fluency_nll: rules fluency, controls (its tie-break) and
    relevance; agreement: rule controls; relevance: rule relevance."""

    fluency_nll: FluencyNLL | None = None
    agreement: ControlAgreement | None = None
    relevance: ContextRelevance | None = None

    def check(self, rule: str) -> None:
        """Raise if `rule` needs a model that is missing."""
        if rule in ("fluency", "controls", "relevance") and self.fluency_nll is None:
            raise PipelineError(f"sample.rerank {rule} needs a language model to score the draws (fluency_nll)")
        if rule == "controls" and self.agreement is None:
            raise PipelineError("sample.rerank controls needs the taggers to re-tag the draws (agreement)")
        if rule == "relevance" and self.relevance is None:
            raise PipelineError("sample.rerank relevance needs a sentence encoder to compare draws and contexts")


@dataclass(frozen=True)
class SampleConfig:
    """params.yaml `sample`: which examples are generated and how.

    split / subset: the examples (subset seeded; null = the whole split). steps: reverse steps (continuous: null = the
    full T-step ancestral sampler, fewer = respaced; masked: unmasking steps, null = one token per step). clamp:
    (continuous) clamp the predicted x0 to the nearest embedding at every step. temperature: (masked) 0 = the most
    probable token, > 0 = Gumbel sampling at that temperature. solver: (continuous) the reverse process,
    sampler.SOLVERS: ancestral or dpm++2m (DPM-Solver++, deterministic). edit_strength: the `edit` mode starts from each
    candidate's own response at this strength (sampler.py; 1 = from noise). num_samples: seeded draws per control
    row, of which `rerank` keeps one (RERANKS). candidates: how many of each example's retrieved candidates the
    `retrieved` mode generates from (rank < candidates; null = all retrieve.k); edit_candidates: the same for the
    `edit` mode. The draws of all of an example's candidates compete in one rerank, which keeps one text per example
    (with `rerank` none: draw 0 of the first candidate). batch_size:
    control rows per forward pass, each with all its num_samples draws. bf16: run the denoiser under bfloat16
    autocast (float32 probabilities): true, false or auto (where the device computes bfloat16 natively).
    """

    split: Literal["train", "valid", "test"]
    subset: int | None
    steps: int | None
    clamp: bool
    temperature: float
    solver: Literal["ancestral", "dpm++2m"]
    edit_strength: float
    num_samples: int
    rerank: Literal["none", "mbr", "fluency", "controls", "relevance"]
    candidates: int | None
    edit_candidates: int | None
    batch_size: int
    bf16: Bf16

    def __post_init__(self):
        if ((self.steps is not None and self.steps < 1) or self.batch_size < 1 or self.temperature < 0
                or not 0 < self.edit_strength <= 1 or self.num_samples < 1
                or any(c is not None and c < 1 for c in (self.candidates, self.edit_candidates))):
            raise PipelineError(f"params.yaml `sample`: steps={self.steps}, batch_size={self.batch_size}, "
                                f"temperature={self.temperature}, edit_strength={self.edit_strength}, num_samples="
                                f"{self.num_samples}, candidates={self.candidates}, edit_candidates="
                                f"{self.edit_candidates} (steps, batch_size, num_samples, candidates, edit_candidates "
                                ">= 1; temperature >= 0; edit_strength in (0, 1])")

    def for_edit(self) -> "SampleConfig":
        """The settings of the `edit` mode: its candidates are edit_candidates."""
        return dataclasses.replace(self, candidates=self.edit_candidates)


def eval_subset(example_ids: Sequence[str], n: int | None, seed: int) -> list[str]:
    """A fixed, seeded choice of n distinct example ids (all of them when n is None or >= their number), sorted.

    Depends only on the set of ids, n and seed, so every stage that calls it picks the same examples."""
    ids = sorted(set(example_ids))
    if n is None or n >= len(ids):
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return sorted(ids[i] for i in pick)


def control_rows(controls: pd.DataFrame, candidates: pd.DataFrame, cfg: SampleConfig, seed: int,
                 source: str) -> list[dict]:
    """The control-source rows generated for the scored subset: the first cfg.candidates candidates (schema
    CANDIDATES; null = all) of each example of the seeded cfg.subset of cfg.split (controls: schema CONTROLS), each
    with that example's `context`, sorted by (example_id, rank): every example has the same number of rows, so its
    candidates are `group_size(rows)` consecutive rows. source: the candidates file, named in the errors."""
    split = controls[controls["split"] == cfg.split]
    ids = eval_subset(split["example_id"], cfg.subset, seed)
    keep = candidates["example_id"].isin(set(ids)) & (candidates["rank"] < (cfg.candidates or len(candidates)))
    cands = candidates[keep].sort_values(["example_id", "rank"], ignore_index=True)
    missing = sorted(set(ids) - set(cands["example_id"]))
    if missing:
        raise PipelineError(f"{source} has no candidates for {len(missing)} {cfg.split} examples (e.g. {missing[0]}): "
                            "rebuild it with `dvc repro retrieve`")
    counts = cands["example_id"].value_counts()
    if counts.nunique() > 1:
        raise PipelineError(f"{source} has {counts.min()} candidates for example {counts.idxmin()} but {counts.max()} "
                            f"for others: set sample.candidates / edit_candidates to at most {counts.min()}")
    context = dict(zip(split["example_id"], split["context"]))
    return [{**row, "context": context[row["example_id"]]} for row in cands.to_dict("records")]


def group_size(rows: Sequence[Mapping]) -> int:
    """Rows per example of `control_rows` output (its candidates)."""
    return len(rows) // len({r["example_id"] for r in rows})


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


def pick(rule: str, draws: list[list[str]], nll: np.ndarray | None = None, agreement: np.ndarray | None = None,
         relevance: np.ndarray | None = None, eligible: np.ndarray | None = None) -> np.ndarray:
    """The draw kept for each row by `rule` (RERANKS) -> indices [rows]. draws: texts [draws][rows]; nll: their mean NLL
    per token [draws, rows] (rules fluency, controls, relevance); agreement: with their controls [draws, rows] (rule
    controls); relevance: to their context [draws, rows] (rule relevance); eligible: bool [draws, rows], at least one
    per row (default: all): a rule keeps an ineligible draw only when no eligible one has a text."""
    if eligible is None:
        eligible = np.ones((len(draws), len(draws[0])), dtype=bool)
    nll = None if nll is None else np.where(eligible, nll, np.nan)  # scored as an empty draw
    agreement = None if agreement is None else np.where(eligible, agreement, -np.inf)
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
        return relevance_pick(nll, relevance)
    raise PipelineError(f"unknown sample.rerank {rule!r}: use one of {', '.join(RERANKS)}")


def complete(rows: Sequence[Mapping], vocab: Vocab, cfg) -> np.ndarray:
    """Whether the model's input holds each control row's whole response -> bool [rows]. A response too long for
    cfg.max_len (a ModelConfig) loses words from its end (inputs.encode_example), so its generations stop mid-way."""
    return np.array([sum(r == Role.RESPONSE for r in example.role) - 1 == len(row["subword_word"])  # minus END
                     for example, row in zip(encode_rows(rows, vocab, cfg, gold=False), rows)])


def draw(model: nn.Module, vocab: Vocab, rows: Sequence[Mapping], cfg: SampleConfig, seed: int,
         strength: float = 1.0) -> list[list[str]]:
    """cfg.num_samples generated responses per control-source row (mappings with `context` and the CONTROL_FIELDS
    keys) -> texts [num_samples][rows], in the order of `rows`.

    cfg: the sampler's settings (SampleConfig): steps, clamp, temperature, solver, bf16, batch_size. strength < 1
    starts from each row's own response (`subword_ids`: the candidate's). Rows are batched by encoded length (less
    padding), and every batch holds all the draws of its rows, draw-major. Draw j takes its noise from its own generator seeded
    with seed + j (sampler.sample): a rerun gives the same texts, and draw j is the same whatever num_samples is
    (num_samples 1 gives draw 0).
    """
    device = next(model.parameters()).device
    examples = encode_rows(rows, vocab, model.cfg, gold=strength < 1)
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]))
    schedule = Schedule(model.cfg.T, model.cfg.noise_offset)
    generators = [torch.Generator(device).manual_seed(seed + j) for j in range(cfg.num_samples)]
    bf16 = use_bf16(cfg.bf16, device)
    draws = [[""] * len(rows) for _ in range(cfg.num_samples)]
    chunks = [order[i:i + cfg.batch_size] for i in range(0, len(order), cfg.batch_size)]
    for chunk in progress(chunks, desc="sample", every_s=30.0):
        batch = collate([examples[i] for i in chunk] * cfg.num_samples).to(device)  # [num_samples x rows, L]
        ids = sample(model, batch, schedule, cfg.steps, cfg.clamp, generators, cfg.temperature, strength, bf16,
                     cfg.solver)
        for j, texts in enumerate(draws):
            for i, gen in zip(chunk, ids[j * len(chunk):(j + 1) * len(chunk)]):
                texts[i] = decode(gen)
    return draws


def pooled(matrix: np.ndarray, group: int) -> np.ndarray:
    """[draws, rows] -> [group x draws, rows / group]: each column holds every draw of a group of `group` consecutive
    rows, option o being draw o % draws of the group's row o // draws (the first row's draws first)."""
    draws, rows = matrix.shape
    return matrix.reshape(draws, rows // group, group).transpose(2, 0, 1).reshape(group * draws, rows // group)


def pick_pooled(rule: str, texts: np.ndarray, nll: np.ndarray | None, agreement: np.ndarray | None,
                relevance: np.ndarray | None, group: int, whole: np.ndarray) -> list[tuple[int, int]]:
    """texts: object [draws, rows]; nll / agreement / relevance: [draws, rows] as `pick` reads them (None: not read);
    whole: bool [rows] (`complete`) -> for each group of `group` consecutive rows, the (row, draw) that `rule` keeps
    among all the group's draws, those of a row that is not whole only when no row of the group is."""
    n = texts.shape[0]
    eligible = pooled(np.tile(np.asarray(whole, dtype=bool), (n, 1)), group)  # [group x n, rows / group]
    eligible |= ~eligible.any(axis=0)
    kept = pick(rule, pooled(texts, group).tolist(),
                *(None if m is None else pooled(m, group) for m in (nll, agreement, relevance)), eligible)
    return [(g * group + o // n, o % n) for g, o in enumerate(kept)]


def rerank(draws: list[list[str]], rows: Sequence[Mapping], rule: str, judges: Judges = Judges(),
           group: int = 1, whole: np.ndarray | None = None) -> list[tuple[int, int]]:
    """The text kept by `rule` (RERANKS) with the models in `judges` (each called once, on every draw of every row) out
    of draws [num_samples][rows] of the control rows `rows`, for each group of `group` consecutive rows (1: each row
    alone; the candidates of an example: `group_size`) -> (row, draw) of the kept text, per group [rows / group].
    whole: bool [rows] (`complete`): in a group with a whole row, the draws of cut rows are not kept."""
    judges.check(rule)
    if len(rows) % group:
        raise PipelineError(f"{len(rows)} control rows do not split into groups of {group}")
    n, shape = len(draws), (len(draws), len(rows))
    texts = np.array([t for d in draws for t in d], dtype=object).reshape(shape)
    whole = np.ones(len(rows), dtype=bool) if whole is None else whole
    if rule == "none" or n * group == 1:
        return pick_pooled("none", texts, None, None, None, group, whole)
    flat = texts.ravel().tolist()  # draw-major
    nll = judges.fluency_nll(flat).reshape(shape) if rule in ("fluency", "controls", "relevance") else None
    agreement = judges.agreement(list(rows) * n, flat).reshape(shape) if rule == "controls" else None
    relevance = judges.relevance(list(rows) * n, flat).reshape(shape) if rule == "relevance" else None
    return pick_pooled(rule, texts, nll, agreement, relevance, group, whole)


def generate(model: nn.Module, vocab: Vocab, rows: Sequence[Mapping], cfg: SampleConfig, seed: int,
             strength: float = 1.0, judges: Judges = Judges()) -> list[str]:
    """One generated response per control-source row: cfg.num_samples draws (`draw`), one kept by cfg.rerank
    (`rerank`, reading the models in `judges`). -> texts in the order of `rows`."""
    judges.check(cfg.rerank)
    draws = draw(model, vocab, rows, cfg, seed, strength)
    return [draws[d][i] for i, d in rerank(draws, rows, cfg.rerank, judges)]
