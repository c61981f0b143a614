"""The decoding sweep: sampler steps x temperature x candidates x draws x rerank rule, on the scored subset of a split
-> plots/decoding_sweep.csv (one row per mode, split, steps, temperature, number of candidates, number of draws and
rule; a rerun replaces the rows of its mode, split, steps, temperatures, candidates and rules).

Not a stage of the default DAG (it samples every setting it compares; its sample_seconds column says how long each
takes); run it by hand on the trained model:
    python -m stages.decoding_sweep --mode retrieved --temperatures 0,0.5,1 --draws 1,2,4,6
    python -m stages.decoding_sweep --mode oracle --temperatures 1 --draws 1,2,4,6
    python -m stages.decoding_sweep --split valid --temperatures 1 --draws 6 --reranks none,mbr,fluency,controls
    python -m stages.decoding_sweep --split valid --temperatures 1 --draws 6 --steps null,32,16,8
    python -m stages.decoding_sweep --split valid --temperatures 1 --draws 1,3,6 --candidates 1,2,3 --reranks relevance
    python -m stages.decoding_sweep --mode edit --split valid --temperatures 1 --draws 6 --candidates 3 \
        --reranks relevance --strengths 0.2,0.25,0.3
Columns and method: pipeline/experiments/decoding_sweep.py; the table: docs/diffusion.md.
"""
import dataclasses
import math
from pathlib import Path

import pandas as pd
import typer

from pipeline.cli import guard
from pipeline.decoder import Decoder
from pipeline.diffusion.config import RERANKS, SampleConfig
from pipeline.errors import PipelineError
from pipeline.experiments.decoding_sweep import WORD, sweep_decoding
from pipeline.frames import FrameTagger
from pipeline.io import atomic_path, read_frame
from pipeline.judges import ControlAgreement, context_relevance
from pipeline.metrics.diversity import distinct_n
from pipeline.metrics.relevance import BertScore, FluencyScorer, fluency_ppl
from pipeline.params import load_params, section, value
from pipeline.progress import log
from pipeline.rerank import Judges
from pipeline.schemas import CANDIDATES, CONTROLS, DIALOGUES
from pipeline.seeding import seed_everything
from pipeline.segment import segment_texts
from pipeline.subset import control_rows, group_size
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)

SOURCES = {"retrieved": "data/retrieval/candidates.parquet", "oracle": "data/retrieval/oracle.parquet",
           "edit": "data/retrieval/candidates.parquet"}


def numbers(text: str, kind: type, null: bool = False) -> list:
    """'0,0.5,1' -> [0.0, 0.5, 1.0]; with null, the item 'null' is None."""
    try:
        return [None if null and x == "null" else kind(x) for x in text.split(",")]
    except ValueError:
        raise PipelineError(f"{text!r}: give comma-separated {kind.__name__}s, e.g. 0,0.5,1") from None


@app.command()
@guard
def main(mode: str = typer.Option("retrieved", help="retrieved | oracle | edit (at sample.edit_strength)"),
         temperatures: str = typer.Option("0,0.5,1", help="comma-separated sampling temperatures"),
         draws: str = typer.Option("1,2,4,6", help="comma-separated numbers of draws"),
         reranks: str = typer.Option("fluency", help=f"comma-separated rerank rules: {', '.join(RERANKS)}"),
         steps: str = typer.Option(None, help="comma-separated sampler step counts, null = the most "
                                              "(default: sample.steps)"),
         candidates: str = typer.Option("1", help="comma-separated numbers of candidates per example whose draws "
                                                  "compete (at most retrieve.k)"),
         strengths: str = typer.Option(None, help="mode edit: comma-separated edit strengths (default: "
                                                  "sample.edit_strength)"),
         split: str = typer.Option(None, help="train | valid | test (default: sample.split); choose rules on valid"),
         controls: str = "data/signals/controls.parquet", dialogues: str = "data/prepared/dialogues.parquet",
         model: str = "models/diffusion", taggers: str = "models/taggers", framenet: str = "data/raw/framenet",
         frames_model: str = "models/frames", out: str = "plots/decoding_sweep.csv",
         params: str = "params.yaml") -> None:
    if mode not in SOURCES:
        raise PipelineError(f"unknown mode {mode!r}: use one of {', '.join(SOURCES)}")
    temps, counts, cands = numbers(temperatures, float), numbers(draws, int), numbers(candidates, int)
    step_counts = None if steps is None else numbers(steps, int, null=True)
    if min(temps) < 0 or min(counts) < 1 or min(cands) < 1 or any(s is not None and s < 1 for s in step_counts or []):
        raise PipelineError(f"--temperatures {temperatures} --draws {draws} --candidates {candidates} --steps {steps}: "
                            "temperatures >= 0, draws and candidates >= 1, steps >= 1 or null")
    if strengths is not None and mode != "edit":
        raise PipelineError("--strengths applies to mode edit only (the other modes start from noise, strength 1)")
    p = load_params(params)
    cfg, seed = section(p, "sample", SampleConfig), value(p, "seed", int)
    cfg = dataclasses.replace(cfg, split=split or cfg.split)
    rules = reranks.split(",")
    seed_everything(seed)
    rows = control_rows(read_frame(controls, CONTROLS, stage="controls"),
                        read_frame(SOURCES[mode], CANDIDATES, stage="retrieve"),
                        dataclasses.replace(cfg, candidates=max(cands)), seed, SOURCES[mode])
    gold = read_frame(dialogues, DIALOGUES, stage="prepare").set_index("example_id")["response"]
    gold = list(gold.loc[[r["example_id"] for r in rows]])
    fluency_nll, bertscore = FluencyScorer.load().nll, BertScore()
    frame_tagger = FrameTagger.load(framenet, frames_model)
    judges = Judges(fluency_nll, ControlAgreement.load(taggers, section(p, "tag", TagParams).cm_threshold),
                    context_relevance)
    decoder = Decoder.load(model, cfg, judges)
    table = [dict(row, strength=strength if mode == "edit" else 1.0)
             for strength in (numbers(strengths, float) if strengths else [cfg.edit_strength])
             for row in sweep_decoding(decoder.with_settings(edit_strength=strength), rows, gold, seed, temps, counts,
                                       mode == "edit", bertscore, rules, step_counts, cands, group_size(rows),
                                       lambda texts: frame_tagger.tag(segment_texts(texts), texts))]
    first = [i for i, r in enumerate(rows) if r["rank"] == 0]
    log(f"[decoding_sweep] reference on these {len(first)} {cfg.split} examples: gold fluency_ppl_smollm2 "
        f"{fluency_ppl(fluency_nll([gold[i] for i in first])):.1f}, dist2 "
        f"{distinct_n([WORD.findall(gold[i].lower()) for i in first], 2):.2f}; "
        f"the source response's BERTScore against the gold "
        f"{float(bertscore([rows[i]['cand_response'] for i in first], [gold[i] for i in first]).mean()):.4f}")
    new = pd.DataFrame(table).assign(mode=mode, split=cfg.split, examples=len(first))
    old = pd.read_csv(out) if Path(out).exists() else pd.DataFrame(columns=new.columns)
    old = old.assign(candidates=old.get("candidates", 1),  # rows from before these columns: one candidate each,
                     strength=old.get("strength", math.nan))  # strength not recorded
    replaced = ((old["mode"] == mode) & (old["split"] == cfg.split) & old["temperature"].isin(temps)
                & old["rerank"].isin(rules) & old["steps"].isin(new["steps"]) & old["candidates"].isin(cands)
                & old["strength"].isin(new["strength"]))
    merged = pd.concat([old[~replaced], new], ignore_index=True)[["mode", "split", "examples", *table[0]]]
    with atomic_path(out, ".csv") as tmp:
        merged.to_csv(tmp, index=False)
    log(f"[decoding_sweep] {mode}:\n{new.to_string(index=False)}")


if __name__ == "__main__":
    app()
