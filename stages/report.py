"""Stage report: the README results table from metrics/*.json, the steering table (metrics/steering.json), five
generated examples picked by seed, and static PNGs of the plots (offline viewing)."""
from pathlib import Path

import pandas as pd
import typer

from pipeline.cli import guard
from pipeline.diffusion.config import ModelConfig, SampleConfig, TrainConfig
from pipeline.errors import missing_artifact
from pipeline.io import read_frame, read_json
from pipeline.params import load_params, section, value
from pipeline.plots import read_step_metrics, render_cm, render_curves
from pipeline.report import (BEGIN, END, EXAMPLES, STEERING, examples_section, model_note, results_section,
                             steering_section, update_readme)
from pipeline.retrieval import RetrieveParams
from pipeline.schemas import DIALOGUES, SCORES

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(scores: str = "metrics/scores.json",
         metrics: list[str] = typer.Option(["metrics/taggers.json", "metrics/frames.json", "metrics/retrieval.json"]),
         cm_data: str = "plots/cm.csv", cm_png: str = "plots/cm.png",
         loss_data: str = "dvclive/train_diffusion/plots/metrics", loss_png: str = "plots/train_loss.png",
         per_example: str = "data/scores/per_example.parquet", dialogues: str = "data/prepared/dialogues.parquet",
         steering: str = "metrics/steering.json",
         readme: str = "README.md", params: str = "params.yaml") -> None:
    others = {Path(m).name: read_json(m) for m in metrics}
    outputs = read_frame(per_example, SCORES, stage="score")
    dialogue = read_frame(dialogues, DIALOGUES, stage="prepare")
    contexts = dict(zip(dialogue["example_id"], (list(c) for c in dialogue["context"])))
    p = load_params(params)
    sampling, k = section(p, "sample", SampleConfig), section(p, "retrieve", RetrieveParams).k
    counts = sampling.candidates_of(k), sampling.for_edit().candidates_of(k)  # retrieved, edit
    training = section(p, "train", TrainConfig)
    note = model_note(section(p, "model", ModelConfig), training.steps, training.batch_size, sampling.steps)
    update_readme(readme, {(BEGIN, END): results_section(read_json(scores, stage="score"), others,
                                                         sampling.num_samples, sampling.rerank, *counts, note),
                           EXAMPLES: examples_section(outputs, contexts, value(p, "seed", int)),
                           STEERING: steering_section(read_json(steering, stage="steering"))})
    for data, png, render, read, stage in ((cm_data, cm_png, render_cm, pd.read_csv, "score"),
                                           (loss_data, loss_png, render_curves, read_step_metrics, "train_diffusion")):
        if not Path(data).exists():
            raise missing_artifact(data, stage)
        render(read(data), png)


if __name__ == "__main__":
    app()
