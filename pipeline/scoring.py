"""Score the four systems of Table 2 on the same examples with the same scorers.

Systems (one output per example) and the controls each is checked against:
- human: the gold response, against the gold controls (controls.parquet);
- retrieval: the top-1 retrieved candidate response, against its own controls (candidates.parquet rank 0);
- retrieval_reranked: the response of the candidate that `sample.rerank` keeps among the first
  `sample.edit_candidates` (each candidate's own response as its one draw: `reranked_sources`), against its own
  controls: what the reranking of diffusemp_edit buys without the diffusion model;
- diffusemp: generated from retrieved candidates' controls (samples/retrieved.parquet: one text per example, kept
  among the draws of its first `sample.candidates` candidates: the paper's top-1 by default), against the controls of
  the candidate it came from;
- diffusemp_oracle: generated from the gold controls (samples/oracle.parquet), against them (oracle.parquet);
- diffusemp_edit: generated from the first `sample.edit_candidates` retrieved candidates' controls starting from their
  responses (samples/edit.parquet, kept as for diffusemp), against the controls of the candidate it came from.
The human and retrieval rows re-tag texts whose controls were tagged by the same taggers, so their ACC/F1 should be
100: anything less measures how far re-tagging at scoring time drifts from the stored tags.
"""
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa

from pipeline.errors import PipelineError
from pipeline.labels import MECHANISMS
from pipeline.metrics.control import (CM_COLUMNS, cm_accuracy, cm_confusion, cm_f1, cm_matches, f1, intent_confusions,
                                     intent_positions, macro_f1, ratio, sf_overlap)
from pipeline.metrics.diversity import avg_len, distinct_n
from pipeline.metrics.relevance import fluency_ppl, miscore
from pipeline.metrics.selfbleu import pair_bleu, self_bleu
from pipeline.progress import log
from pipeline.rerank import Judges, rerank
from pipeline.schemas import CONTROL_NAMES
from pipeline.subset import group_size

SYSTEMS = ("human", "retrieval", "retrieval_reranked", "diffusemp", "diffusemp_oracle", "diffusemp_edit")
P_CM = [f"p_{m}" for m in MECHANISMS]

# data/scores/labels.parquet: one row per (system, example) of data/scores/per_example.parquet (schema SCORES), the
# labels its F1-CM / F1-IT were computed from, which the ablation study's paired bootstrap recomputes them from
# (pipeline.ablations). Declared here, in the module that builds it, and not in pipeline/schemas.py: every stage depends
# on the schema module, so adding this table there would have rerun the whole pipeline for outputs that do not change.
SCORE_LABELS = pa.schema([
    ("system", pa.string()),
    ("example_id", pa.string()),
    *[(f"{c}_tagged", pa.bool_()) for c in CM_COLUMNS],  # the output's re-tagged CM (cm_er, cm_ip, cm_ex)
    *[(f"{c}_control", pa.bool_()) for c in CM_COLUMNS],  # the CM it was given
    ("it_tagged", pa.list_(pa.string())),  # one intent per output sentence
    ("it_control", pa.list_(pa.string())),  # the intents it was given
])


@dataclass(frozen=True)
class ScoreParams:
    """params.yaml `score`: batch sizes of the BERTScore and SmolLM2 scorers, and MIScore's token budget."""

    bertscore_batch_size: int
    miscore_batch_size: int
    miscore_max_tokens: int


@dataclass
class Scorers:
    """The models that read outputs. Stage `score` loads the real ones; tests pass light stand-ins.

    segment: texts -> `pipeline.segment.segment_texts` rows;
    tag: (contexts, responses, segments) -> TAGS columns but example_id (`pipeline.tagging.Taggers.tag`);
    frames: (segments, responses) -> one SF token per word (`pipeline.frames.FrameTagger.tag`);
    bertscore: (candidates, references) -> F1 [N]; mi_nll: (contexts, responses) -> mean context NLL [N]
    (`pipeline.metrics.relevance.MIScorer.nll`); fluency_nll: responses -> mean NLL of each text alone [N], NaN for
    an empty one (`pipeline.metrics.relevance.FluencyScorer.nll`).
    """
    segment: Callable[[list[str]], list[dict]]
    tag: Callable[[list[list[str]], list[str], list[dict]], pd.DataFrame]
    frames: Callable[[list[dict], list[str]], list[list[str]]]
    bertscore: Callable[[list[str], list[str]], np.ndarray]
    mi_nll: Callable[[list[list[str]], list[str]], np.ndarray]
    fluency_nll: Callable[[list[str]], np.ndarray]

    @classmethod
    def load(cls, cfg: ScoreParams, taggers_dir, cm_threshold: float, framenet_dir, frames_model) -> "Scorers":
        """The real scorers: spaCy, the taggers of taggers_dir at cm_threshold (params.yaml `tag.cm_threshold`, so that
        re-tagging the human responses reproduces their stored controls), the frame tagger, BERTScore on MiniLM and
        one SmolLM2 for MIScore and fluency."""
        import functools

        from pipeline.frames import FrameTagger
        from pipeline.metrics.relevance import BertScore, FluencyScorer, MIScorer
        from pipeline.segment import segment_texts
        from pipeline.tagging import Taggers

        mi = MIScorer.load(max_tokens=cfg.miscore_max_tokens, batch_size=cfg.miscore_batch_size)
        fluency = FluencyScorer(mi.model, mi.tokenizer, batch_size=cfg.miscore_batch_size)  # the same SmolLM2
        return cls(segment=segment_texts, tag=functools.partial(Taggers.load(taggers_dir).tag, cm_threshold=cm_threshold),
                   frames=FrameTagger.load(framenet_dir, frames_model).tag,
                   bertscore=BertScore(batch_size=cfg.bertscore_batch_size), mi_nll=mi.nll, fluency_nll=fluency.nll)


def top1(table: pd.DataFrame, ids: list[str], what: str) -> pd.DataFrame:
    """The rank-0 rows of `table` for `ids`, in that order; every id must have one."""
    rows = table[table["rank"] == 0].drop_duplicates("example_id").set_index("example_id")
    missing = [i for i in ids if i not in rows.index]
    if missing:
        raise PipelineError(f"{what} lacks rank-0 rows for {len(missing)} scored examples (e.g. {missing[0]}): "
                            "rebuild it with `dvc repro`")
    return rows.loc[ids].reset_index()


def kept(samples: pd.DataFrame, sources: pd.DataFrame, ids: list[str], what: str) -> tuple[pd.Series, pd.DataFrame]:
    """The sample of each of `ids` (samples: schema SAMPLES, one row per example) and the row of `sources` (schema
    CANDIDATES) it was generated from, matched on (example_id, rank) -> (texts, source rows), in the order of ids."""
    one = samples.drop_duplicates("example_id", keep=False).set_index("example_id")
    bad = [i for i in ids if i not in one.index]
    if bad:
        raise PipelineError(f"{what} lacks a single sample for {len(bad)} scored examples (e.g. {bad[0]}): rebuild it "
                            "with `dvc repro sample`")
    keys = list(zip(ids, one.loc[ids, "rank"]))
    source = sources.drop_duplicates(["example_id", "rank"]).set_index(["example_id", "rank"])
    unknown = [k for k in keys if k not in source.index]
    if unknown:
        raise PipelineError(f"{what} was generated from candidate {unknown[0]}, which the candidates table lacks: "
                            "rebuild it with `dvc repro sample`")
    return one.loc[ids, "text"], source.loc[keys].reset_index()


def reranked_sources(rows: Sequence[Mapping], rule: str, judges: Judges) -> pd.DataFrame:
    """rows: the control rows `pipeline.subset.control_rows` gives stage sample (every example's first candidates, with
    `context`); the candidate of each example whose own response `rule` keeps (`pipeline.rerank.rerank` with one draw
    per row: the candidate's response) -> DataFrame[example_id, rank, text] (the columns of schema SAMPLES it fills)."""
    kept = rerank([[r["cand_response"] for r in rows]], rows, rule, judges, group_size(rows))
    return pd.DataFrame({"example_id": [rows[i]["example_id"] for i, _ in kept],
                         "rank": [rows[i]["rank"] for i, _ in kept],
                         "text": [rows[i]["cand_response"] for i, _ in kept]})


def assemble_systems(dialogues: pd.DataFrame, controls: pd.DataFrame, candidates: pd.DataFrame,
                     oracle: pd.DataFrame, retrieved_samples: pd.DataFrame, oracle_samples: pd.DataFrame,
                     edit_samples: pd.DataFrame, reranked: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """One DataFrame per system, rows aligned on the examples that were sampled (those of samples/retrieved).
    reranked: `reranked_sources` of the same examples.

    Columns: example_id, context (list[str]), reference (gold response), text (the system's output) and the
    CONTROL_FIELDS of the controls the output is checked against.
    """
    ids = sorted(retrieved_samples["example_id"].unique())
    if not ids:
        raise PipelineError("samples/retrieved.parquet is empty: rebuild it with `dvc repro sample`")
    gold = gold_rows(dialogues, controls, ids)
    cand = top1(candidates, ids, "candidates.parquet")
    sources = {  # system -> (output texts, controls table)
        "human": (gold["response"], gold),
        "retrieval": (cand["cand_response"], cand),
        "retrieval_reranked": kept(reranked, candidates, ids, "the reranked candidates"),
        "diffusemp": kept(retrieved_samples, candidates, ids, "samples/retrieved.parquet"),
        "diffusemp_oracle": kept(oracle_samples, oracle, ids, "samples/oracle.parquet"),
        "diffusemp_edit": kept(edit_samples, candidates, ids, "samples/edit.parquet"),
    }
    return {name: system_frame(gold, texts, ctrl) for name, (texts, ctrl) in sources.items()}


def gold_rows(dialogues: pd.DataFrame, controls: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    """The dialogues rows of `ids` (in that order) joined with their gold controls (CONTROL_NAMES); each must have a
    context."""
    gold = top1(dialogues.merge(controls[["example_id", *CONTROL_NAMES]], on="example_id").assign(rank=0), ids,
                "dialogues.parquet joined with controls.parquet")
    empty = gold.loc[gold["context"].map(len) == 0, "example_id"]
    if len(empty):
        raise PipelineError(f"example {empty.iloc[0]} has an empty context: MIScore needs one; check stage prepare")
    return gold


def system_frame(gold: pd.DataFrame, texts, controls: pd.DataFrame) -> pd.DataFrame:
    """gold: `gold_rows`; texts: one output per row; controls: the rows (CONTROL_NAMES) each output is checked against
    -> the frame `score_system` reads (example_id, context, reference, text, CONTROL_NAMES)."""
    base = pd.DataFrame({"example_id": list(gold["example_id"]), "context": list(gold["context"]),
                         "reference": list(gold["response"])})
    return base.assign(text=list(texts), **{c: list(controls[c]) for c in CONTROL_NAMES})


def score_system(outputs: pd.DataFrame, scorers: Scorers) -> tuple[pd.DataFrame, dict]:
    """Score one system's outputs (an `assemble_systems` frame) -> (rows with the SCORES and SCORE_LABELS columns but
    `system`, and `fluency_nll`; summary metrics).

    Summary keys: bertscore_f1_minilm (0-1), miscore_smollm2, fluency_ppl_smollm2, empty_outputs, bleu4_to_source
    (x 100: against the response the controls came from; the candidate for retrieval-controlled systems), acc_cm and
    f1_cm (+ _er/_ip/_ex), acc_it, f1_it, f1_sf, dist_1/2/4, self_bleu_5 (all x 100), avg_len (tokens), p_er/p_ip/p_ex
    (mean tagger probabilities, Figure 4).
    """
    texts, contexts = list(outputs["text"]), [list(c) for c in outputs["context"]]
    segments = scorers.segment(texts)
    tokens = [[w.lower() for w in s["words"]] for s in segments]
    tags = scorers.tag(contexts, texts, segments)
    sf = scorers.frames(segments, texts)

    cm_tagged, cm_control = tags[list(CM_COLUMNS)].to_numpy(bool), outputs[list(CM_COLUMNS)].to_numpy(bool)  # [N, 3]
    cm_ok = cm_matches(cm_tagged, cm_control)
    it = intent_positions(tags["intents"], outputs["intents"])  # [N, (correct, total)]
    sfo = np.array([sf_overlap(t, list(c)) for t, c in zip(sf, outputs["sf"])],
                   dtype=int).reshape(-1, 3)  # [N, (overlap, tagged, control)]
    nll = scorers.mi_nll(contexts, texts)
    per = pd.DataFrame({
        "example_id": outputs["example_id"], "text": texts, "n_tokens": [len(t) for t in tokens],
        "bertscore_f1": scorers.bertscore(texts, list(outputs["reference"])), "mi_nll": nll,
        "self_bleu": self_bleu(tokens), "fluency_nll": scorers.fluency_nll(list(texts)),
        **{f"{c}_ok": cm_ok[:, j] for j, c in enumerate(CM_COLUMNS)},
        **{f"{c}_tagged": cm_tagged[:, j] for j, c in enumerate(CM_COLUMNS)},
        **{f"{c}_control": cm_control[:, j] for j, c in enumerate(CM_COLUMNS)},
        "it_correct": it[:, 0], "it_total": it[:, 1],
        "it_tagged": [list(t) for t in tags["intents"]], "it_control": [list(c) for c in outputs["intents"]],
        "sf_overlap": sfo[:, 0], "sf_tagged": sfo[:, 1], "sf_control": sfo[:, 2],
        **{p: tags[p].to_numpy(float) for p in P_CM},
    })
    acc, cm_f1s = cm_accuracy(cm_ok), cm_f1(cm_confusion(cm_tagged, cm_control).sum(0))
    summary = {
        "bertscore_f1_minilm": mean(per["bertscore_f1"]),
        "miscore_smollm2": miscore(nll),
        "fluency_ppl_smollm2": fluency_ppl(per["fluency_nll"].to_numpy(float)),
        "empty_outputs": sum(not t.strip() for t in texts),
        "bleu4_to_source": 100.0 * mean([pair_bleu(t, [w.lower() for w in src])
                                         for t, src in zip(tokens, outputs["words"])]),
        "acc_cm": acc["mean"], **{f"acc_cm_{m}": acc[m] for m in MECHANISMS},
        "f1_cm": cm_f1s["mean"], **{f"f1_cm_{m}": cm_f1s[m] for m in MECHANISMS},
        "acc_it": ratio(it[:, 0].sum(), it[:, 1].sum()),
        "f1_it": macro_f1(intent_confusions(tags["intents"], outputs["intents"]).sum(0)),
        "f1_sf": f1(*sfo.sum(0)),
        **{f"dist_{n}": distinct_n(tokens, n) for n in (1, 2, 4)},
        "self_bleu_5": 100.0 * mean(per["self_bleu"]),
        "avg_len": avg_len(tokens),
        **{p: mean(per[p]) for p in P_CM},
    }
    return per, summary


def mean(values) -> float:
    values = np.asarray(values, float)
    return float(values.mean()) if len(values) else math.nan


def score_systems(systems: dict[str, pd.DataFrame], scorers: Scorers) -> tuple[pd.DataFrame, dict]:
    """Score every system -> (table of all systems with the SCORES and SCORE_LABELS columns, {"n_examples": N,
    system: summary, ...}); stage score writes each schema's columns to its own file."""
    rows, metrics = [], {"n_examples": len(next(iter(systems.values())))}
    for name, outputs in systems.items():
        log(f"[score] {name}: {len(outputs)} outputs")
        per, summary = score_system(outputs, scorers)
        rows.append(per.assign(system=name))
        metrics[name] = summary
    return pd.concat(rows, ignore_index=True), metrics


def json_safe(metrics: dict) -> dict:
    """NaN (a metric over nothing) -> None, so the JSON is valid and shows `null`; floats rounded to 4 decimals."""
    def clean(v):
        if isinstance(v, dict):
            return {k: clean(x) for k, x in v.items()}
        if isinstance(v, float):
            return None if math.isnan(v) else round(v, 4)
        return v
    return clean(metrics)


def cm_points(metrics: dict) -> pd.DataFrame:
    """Figure 4 data: one row per system with its mean ER, IP and EX tagger probabilities."""
    return pd.DataFrame([{"system": s, **{m: metrics[s][f"p_{m}"] for m in MECHANISMS}}
                         for s in SYSTEMS if s in metrics])
