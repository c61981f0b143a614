"""Train one baseline of pipeline.baselines.SYSTEMS on ED's training pairs (gold controls for the controlled LM).

params.yaml `baselines` holds the settings of all three: each model's own block (`trs`, `lm`) and its training block
(`trs_train`, `lm_train`: pipeline.baselines.training.TrainParams). The two LMs share theirs, so they differ only in
the controls line of the prompt. The controlled LM is trained with diffusemp's condition dropout (`train.given_levels`
with `train.given_weights`): each pair's line gives one seeded draw of those subsets of its levels, so a level left
out of the line at inference means "choose freely", as it does for diffusemp.
"""
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.baselines import SYSTEMS
from pipeline.baselines import causal_lm, seq2seq
from pipeline.baselines.training import TrainParams, train
from pipeline.errors import PipelineError
from pipeline.params import check
from pipeline.precision import Bf16
from pipeline.progress import log


@dataclass(frozen=True)
class BaselinesParams:
    """params.yaml `baselines` (the blocks are checked by `settings`)."""

    bf16: Bf16
    checkpoint_every_s: float
    resamples: int  # paired bootstrap resamples of the examples (stage score_baselines)
    bench_responses: int  # test examples each system answers in stage bench_baselines
    trs: dict
    trs_train: dict
    lm: dict
    lm_sampling: dict  # stage sample_baseline: pipeline.baselines.decoding.NucleusParams
    lm_train: dict

    def model(self, name: str):
        """The checked model block of system `name`: TRSParams or LMParams."""
        if name == "trs":
            return check(self.trs, seq2seq.TRSParams, "baselines.trs")
        return check(self.lm, causal_lm.LMParams, "baselines.lm")

    def training(self, name: str) -> TrainParams:
        block, where = (self.trs_train, "trs_train") if name == "trs" else (self.lm_train, "lm_train")
        return check(block, TrainParams, f"baselines.{where}")


def check_name(name: str) -> None:
    if name not in SYSTEMS:
        raise PipelineError(f"unknown baseline {name!r}: choose one of {', '.join(SYSTEMS)}")


def train_pairs(rows: pd.DataFrame) -> pd.DataFrame:
    """The training split's rows of controls.parquet (schema CONTROLS) with a context and a non-empty response."""
    rows = rows[(rows["split"] == "train") & (rows["context"].map(len) > 0) & (rows["response"].str.strip() != "")]
    if rows.empty:
        raise PipelineError("controls.parquet has no training pairs: rebuild it with `dvc repro controls`")
    return rows.reset_index(drop=True)


def given_levels(n: int, levels: Sequence[Sequence[str]], weights: Sequence[float], seed: int) -> list[list[str]]:
    """n seeded draws of `levels` (subsets of pipeline.labels.SIGNALS) with probabilities proportional to `weights`."""
    p = np.asarray(weights, float)
    picks = np.random.default_rng(seed).choice(len(levels), size=n, p=p / p.sum())
    return [list(levels[i]) for i in picks]


def fit(name: str, controls: pd.DataFrame, cfg: BaselinesParams, seed: int, out_dir: Path, checkpoint: Path,
        levels: Sequence[Sequence[str]] = (), weights: Sequence[float] = ()) -> dict:
    """Train baseline `name` on the training pairs of `controls` (schema CONTROLS) and save it to out_dir
    (seq2seq.save_trs / causal_lm.save_lm) -> the training summary (pipeline.baselines.training.train).
    levels / weights: the condition dropout of transfertransfo_controls (`given_levels`)."""
    check_name(name)
    rows, model_cfg, train_cfg = train_pairs(controls), cfg.model(name), cfg.training(name)
    log(f"[{name}] {len(rows)} training pairs; {train_cfg.steps} steps of {train_cfg.batch_size}")
    fingerprint = {"name": name, "model": asdict(model_cfg), "pairs": len(rows), "levels": [list(x) for x in levels],
                   "weights": list(weights)}
    if name == "trs":
        from pipeline.models import wordpiece_tokenizer

        tokenizer = wordpiece_tokenizer()
        pairs = [seq2seq.encode_pair(tokenizer, list(c), r, model_cfg) for c, r in zip(rows["context"], rows["response"])]
        model = seq2seq.Seq2Seq(model_cfg, tokenizer.vocab_size)
        summary = train(model, lambda idx: seq2seq.mle_loss(model, [pairs[i] for i in idx]),
                        seq2seq.pair_lengths(pairs), train_cfg, cfg.bf16, seed, checkpoint, cfg.checkpoint_every_s,
                        fingerprint)
        seq2seq.save_trs(out_dir, model)
        return summary
    from pipeline.metrics.relevance import load_smollm2

    model, tokenizer = load_smollm2()
    with_controls = name == "transfertransfo_controls"
    records = rows.to_dict("records")
    if with_controls:
        for record, given in zip(records, given_levels(len(records), levels, weights, seed)):
            record["given"] = given
    pairs = [causal_lm.encode_pair(tokenizer, list(r["context"]), r["response"], r if with_controls else None,
                                   model_cfg) for r in records]
    pad = tokenizer.pad_token_id
    summary = train(model, lambda idx: causal_lm.response_loss(model, [pairs[i] for i in idx], pad),
                    causal_lm.pair_lengths(pairs), train_cfg, cfg.bf16, seed, checkpoint, cfg.checkpoint_every_s,
                    fingerprint)
    causal_lm.save_lm(out_dir, model, tokenizer, model_cfg, with_controls)
    return summary
