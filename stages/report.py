"""Stage report: the README results table from metrics/*.json and static PNGs of the plots (offline viewing)."""
from pathlib import Path

import pandas as pd
import typer

from pipeline.cli import guard
from pipeline.errors import missing_artifact
from pipeline.io import read_json
from pipeline.plots import render_cm, render_curves
from pipeline.report import results_section, update_readme

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(scores: str = "metrics/scores.json",
         metrics: list[str] = typer.Option(["metrics/taggers.json", "metrics/frames.json", "metrics/retrieval.json"]),
         cm_data: str = "plots/cm.csv", cm_png: str = "plots/cm.png",
         loss_data: str = "plots/train_loss.csv", loss_png: str = "plots/train_loss.png",
         readme: str = "README.md") -> None:
    others = {Path(m).name: read_json(m) for m in metrics}
    update_readme(readme, results_section(read_json(scores, stage="score"), others))
    for data, png, render, stage in ((cm_data, cm_png, render_cm, "score"),
                                     (loss_data, loss_png, render_curves, "train_diffusion")):
        if not Path(data).exists():
            raise missing_artifact(data, stage)
        render(pd.read_csv(data), png)


if __name__ == "__main__":
    app()
