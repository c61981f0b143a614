"""Stage steering: each control level given alone (one CM, one intent), decoded by the default decoder on the test
examples, re-tagged by the score stage's taggers -> metrics/steering.json (adherence against the base rate with its
paired bootstrap interval, fluency, BERTScore: pipeline/steering.py), plots/steering.png and the outputs
data/steering/outputs.parquet (schema pipeline.steering.STEERING_OUTPUTS).

Off the DAG, the guidance sweep on the validation split (docs/diffusion.md, "Controls that steer"):
    for w in 1 1.5 2 3 5; do python -m stages.steering --split valid --guidance $w \
        --metrics plots/steering_sweep/w$w.json --png plots/steering_sweep/w$w.png --out /tmp/steering_w$w.parquet; done
"""
import dataclasses

import pandas as pd
import torch
import typer

from pipeline.cli import guard
from pipeline.controls import control_sequence
from pipeline.decoder import Decoder, SteeredSample
from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import SampleConfig
from pipeline.io import read_frame, write_frame, write_json
from pipeline.judges import load_judges
from pipeline.params import load_params, section, value
from pipeline.plots import render_steering
from pipeline.respond import Overrides
from pipeline.schemas import CANDIDATES, CONTROLS
from pipeline.seeding import seed_everything
from pipeline.steering import BASE, STEERING_OUTPUTS, Judges, SteeringParams, request_rows, requests, steering_report
from pipeline.subset import control_rows
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(candidates: str = "data/retrieval/candidates.parquet", controls: str = "data/signals/controls.parquet",
         model: str = "models/diffusion", taggers: str = "models/taggers",
         out: str = "data/steering/outputs.parquet", metrics: str = "metrics/steering.json",
         png: str = "plots/steering.png", params: str = "params.yaml",
         split: str = typer.Option(None, help="valid | test (default: sample.split); the guidance sweep uses valid"),
         guidance: float = typer.Option(None, help="guidance weight w (default: sample.guidance)")) -> None:
    p = load_params(params)
    sampling, steer = section(p, "sample", SampleConfig), section(p, "steering", SteeringParams)
    seed = value(p, "seed", int)
    changes = {"split": split, "guidance": guidance}
    sampling = dataclasses.replace(sampling, **{k: v for k, v in changes.items() if v is not None})
    threshold = section(p, "tag", TagParams).cm_threshold
    seed_everything(seed)
    net, vocab = load_model(model, "cuda" if torch.cuda.is_available() else "cpu")
    # the requests of the levels the model has (an ablation without CM has no CM to ask for)
    asked = {BASE: Overrides(), **{name: o for name, o in requests(steer.intents).items()
                                   if set(o.levels) <= set(net.cfg.signals)}}
    table = read_frame(controls, CONTROLS, stage="controls")
    rows = control_rows(table, read_frame(candidates, CANDIDATES, stage="retrieve"),
                        dataclasses.replace(sampling, subset=steer.subset, candidates=1), seed, candidates)
    decoder = Decoder(net, vocab, sampling, load_judges(sampling.rerank, taggers, threshold),
                      section(p, "steered_sample", SteeredSample))
    given = {name: request_rows(rows, over) for name, over in asked.items()}
    outputs = {name: [text for _, text in decoder(request, seed)] for name, request in given.items()}

    judges = Judges.load(taggers, threshold)
    gold = dict(zip(table["example_id"], table["response"]))
    report = steering_report(outputs, [list(r["context"]) for r in rows], [gold[r["example_id"]] for r in rows],
                             judges, steer.resamples, seed)
    write_frame(out, pd.DataFrame([
        {"request": name, "example_id": r["example_id"], "control_sequence": control_sequence(r, r["given"]),
         "text": text} for name in outputs for r, text in zip(given[name], outputs[name])]), STEERING_OUTPUTS)
    report = {**report, "split": sampling.split, "guidance": sampling.guidance,
              "guidance_start": sampling.guidance_start}
    write_json(metrics, report)
    render_steering(report, png)


if __name__ == "__main__":
    app()
