"""The decoding sweep: temperature x draws, kept by SmolLM2 fluency, on the rank-0 rows of the scored test subset ->
plots/decoding_sweep.csv (one row per mode, temperature and number of draws; a rerun replaces the rows of its mode
and temperatures).

Not a stage of the default DAG (an hour on 2 cores for the three modes); run it by hand on the trained model:
    python -m stages.decoding_sweep --mode retrieved --temperatures 0,0.5,1 --draws 1,2,4,6
    python -m stages.decoding_sweep --mode oracle --temperatures 1 --draws 1,2,4,6
Columns and method: pipeline/diffusion/decoding_sweep.py; the table: docs/diffusion.md.
"""
import dataclasses
from pathlib import Path

import pandas as pd
import typer

from pipeline.cli import guard
from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.decoding_sweep import sweep_decoding
from pipeline.diffusion.generate import SampleConfig, control_rows
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_frame
from pipeline.metrics.relevance import BertScore, FluencyScorer
from pipeline.params import load_params, section, value
from pipeline.progress import log
from pipeline.schemas import CANDIDATES, CONTROLS, DIALOGUES
from pipeline.seeding import seed_everything

app = typer.Typer(add_completion=False)

SOURCES = {"retrieved": "data/retrieval/candidates.parquet", "oracle": "data/retrieval/oracle.parquet",
           "edit": "data/retrieval/candidates.parquet"}


def numbers(text: str, kind: type) -> list:
    try:
        return [kind(x) for x in text.split(",")]
    except ValueError:
        raise PipelineError(f"{text!r}: give comma-separated {kind.__name__}s, e.g. 0,0.5,1") from None


@app.command()
@guard
def main(mode: str = typer.Option("retrieved", help="retrieved | oracle | edit (at sample.edit_strength)"),
         temperatures: str = typer.Option("0,0.5,1", help="comma-separated sampling temperatures"),
         draws: str = typer.Option("1,2,4,6", help="comma-separated numbers of draws kept by fluency"),
         controls: str = "data/signals/controls.parquet", dialogues: str = "data/prepared/dialogues.parquet",
         model: str = "models/diffusion", out: str = "plots/decoding_sweep.csv", params: str = "params.yaml") -> None:
    if mode not in SOURCES:
        raise PipelineError(f"unknown mode {mode!r}: use one of {', '.join(SOURCES)}")
    temps, counts = numbers(temperatures, float), numbers(draws, int)
    if min(temps) < 0 or min(counts) < 1:
        raise PipelineError(f"--temperatures {temperatures} --draws {draws}: temperatures >= 0, draws >= 1")
    p = load_params(params)
    cfg, seed = section(p, "sample", SampleConfig), value(p, "seed", int)
    seed_everything(seed)
    net, vocab = load_model(model)
    rows = control_rows(read_frame(controls, CONTROLS, stage="controls"),
                        read_frame(SOURCES[mode], CANDIDATES, stage="retrieve"),
                        dataclasses.replace(cfg, candidates=1), seed, SOURCES[mode])
    gold = read_frame(dialogues, DIALOGUES, stage="prepare").set_index("example_id")["response"]
    table = sweep_decoding(net, vocab, rows, list(gold.loc[[r["example_id"] for r in rows]]), cfg, seed, temps,
                           counts, cfg.edit_strength if mode == "edit" else 1.0, FluencyScorer.load().nll, BertScore())
    new = pd.DataFrame(table).assign(mode=mode, examples=len(rows))
    old = pd.read_csv(out) if Path(out).exists() else pd.DataFrame(columns=new.columns)
    replaced = (old["mode"] == mode) & old["temperature"].isin(temps)
    merged = pd.concat([old[~replaced], new], ignore_index=True)[["mode", "examples", *table[0]]]
    with atomic_path(out, ".csv") as tmp:
        merged.to_csv(tmp, index=False)
    log(f"[decoding_sweep] {mode}:\n{new.to_string(index=False)}")


if __name__ == "__main__":
    app()
