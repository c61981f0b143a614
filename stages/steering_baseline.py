"""Stage steering_baseline: the steering benchmark of stage steering (pipeline/steering.py) run on the controlled LM
baseline, transfertransfo_controls: the same test examples, each CM and intent request given alone (the controls line
names only that level; nothing given: `Controls: none`), the same judges -> metrics/steering_baselines.json and the
outputs in data/steering/baselines.parquet (schema pipeline.steering.STEERING_OUTPUTS)."""
import dataclasses

import pandas as pd
import typer

from pipeline.baselines.decoding import BaselineDecoder, NucleusParams
from pipeline.baselines.fit import BaselinesParams
from pipeline.baselines.prompts import controls_text
from pipeline.cli import guard
from pipeline.diffusion.config import SampleConfig
from pipeline.io import read_frame, write_frame, write_json
from pipeline.params import check, load_params, section, value
from pipeline.respond import Overrides
from pipeline.schemas import CANDIDATES, CONTROLS
from pipeline.seeding import seed_everything
from pipeline.steering import BASE, STEERING_OUTPUTS, Judges, SteeringParams, request_rows, requests, steering_report
from pipeline.subset import control_rows
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)
SYSTEM = "transfertransfo_controls"


@app.command()
@guard
def main(candidates: str = "data/retrieval/candidates.parquet", controls: str = "data/signals/controls.parquet",
         model: str = f"models/baselines/{SYSTEM}", taggers: str = "models/taggers",
         out: str = "data/steering/baselines.parquet", metrics: str = "metrics/steering_baselines.json",
         params: str = "params.yaml") -> None:
    p = load_params(params)
    sampling, steer, cfg = section(p, "sample", SampleConfig), section(p, "steering", SteeringParams), section(
        p, "baselines", BaselinesParams)
    seed, threshold = value(p, "seed", int), section(p, "tag", TagParams).cm_threshold
    seed_everything(seed)
    table = read_frame(controls, CONTROLS, stage="controls")
    rows = control_rows(table, read_frame(candidates, CANDIDATES, stage="retrieve"),
                        dataclasses.replace(sampling, subset=steer.subset, candidates=1), seed, candidates)
    decoder = BaselineDecoder(SYSTEM, model, check(cfg.lm_sampling, NucleusParams, "baselines.lm_sampling"))
    given = {name: request_rows(rows, over) for name, over in {BASE: Overrides(), **requests(steer.intents)}.items()}
    outputs = {name: decoder(request, seed) for name, request in given.items()}

    judges = Judges.load(taggers, threshold)  # the judges of stage steering
    gold = dict(zip(table["example_id"], table["response"]))
    report = steering_report(outputs, [list(r["context"]) for r in rows], [gold[r["example_id"]] for r in rows],
                             judges, steer.resamples, seed)
    write_frame(out, pd.DataFrame([
        {"request": name, "example_id": r["example_id"], "control_sequence": controls_text(r), "text": text}
        for name in outputs for r, text in zip(given[name], outputs[name])]), STEERING_OUTPUTS)
    write_json(metrics, {**report, "system": SYSTEM, "split": sampling.split})


if __name__ == "__main__":
    app()
