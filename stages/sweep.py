"""Quality per training minute of candidate designs -> plots/quality_vs_minutes.csv (+ .png): held-out sampling
accuracy, SmolLM2 fluency and one-shot accuracy per quarter of t at each mark of each design's training.

Not a stage of the default DAG (it trains every design); run it by hand or on a GPU:
    python -m stages.sweep --designs sweeps/quality_vs_minutes.yaml
    python -m stages.sweep --designs sweeps/gpu_steps.yaml --no-fluency   # where SmolLM2 is not installed; then
    python -m stages.sweep --designs sweeps/gpu_steps.yaml --rescore plots/quality_vs_minutes.csv
        # fills in fluency from the saved texts, and the CPU-minute estimate from the designs file's speeds
    python -m stages.sweep --designs sweeps/gpu_steps.yaml --speed-steps 5  # each design's examples/s on this machine
    python -m stages.sweep --designs sweeps/dropout.yaml --baseline today --out plots/dropout_sweep.csv \
        --png plots/dropout_sweep.png --differences plots/dropout_sweep.json  # each design against today's, paired
Designs and marks: docs/diffusion.md.
"""
from pathlib import Path

import pandas as pd
import torch
import typer

from pipeline.cli import guard
from pipeline.errors import PipelineError
from pipeline.experiments.sweep import Designs, cpu_minutes, design_speed, fluency_column, paired_differences, run_design
from pipeline.io import atomic_path, read_frame, write_json
from pipeline.metrics.relevance import FluencyScorer
from pipeline.params import load_params, value
from pipeline.plots import render_sweep
from pipeline.schemas import CONTROLS

app = typer.Typer(add_completion=False)


def write(table: pd.DataFrame, out: str, png: str) -> None:
    with atomic_path(out, ".csv") as tmp:
        table.to_csv(tmp, index=False)
    render_sweep(table, png)


@app.command()
@guard
def main(designs: str = "sweeps/quality_vs_minutes.yaml", controls: str = "data/signals/controls.parquet",
         only: list[str] = typer.Option([], help="run only these designs (default: all in the file)"),
         fluency: bool = typer.Option(True, help="score fluency with SmolLM2 now (--no-fluency: later, --rescore)"),
         rescore: str = typer.Option("", help="a sweep CSV whose missing fluency to fill in; nothing is trained"),
         speed_steps: int = typer.Option(0, help="> 0: only time this many training steps of each design"),
         speed_out: str = "metrics/timings/sweep_speed.json",
         out: str = "plots/quality_vs_minutes.csv", png: str = "plots/quality_vs_minutes.png",
         baseline: str = typer.Option("", help="a design to pair the others with (paired_differences): the "
                                               "difference of sampling accuracy at the nearest minutes, with its "
                                               "bootstrap interval"),
         differences: str = typer.Option("", help="where --baseline's differences go (JSON)"),
         resamples: int = 10_000,
         workdir: str = "models/sweep", params: str = "params.yaml") -> None:
    spec = Designs.load(designs)
    if bool(baseline) != bool(differences):
        raise PipelineError("--baseline and --differences go together (the design to pair with, and the JSON file)")
    speeds = spec.cpu_examples_per_s or {}
    if rescore:
        table = fluency_column(pd.read_csv(rescore), FluencyScorer.load().nll)
        write(cpu_minutes(table, speeds) if speeds else table, out, png)
        return
    picked = {k: v for k, v in spec.designs.items() if not only or k in only}
    if baseline and baseline not in picked:
        raise PipelineError(f"--baseline {baseline}: not one of the designs run ({', '.join(picked)})")
    p = load_params(params)
    df = read_frame(controls, CONTROLS, stage="controls")
    train_rows = df[df["split"] == "train"].to_dict("records")
    valid_df = df[df["split"] == "valid"]
    valid_rows = valid_df.sample(n=min(spec.valid_examples, len(valid_df)), random_state=value(p, "seed", int))
    p["train"] = {**p["train"], "valid_examples": spec.valid_examples}
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if speed_steps > 0:
        write_json(speed_out, {"device": str(device), "threads": torch.get_num_threads(),
                               **{name: design_speed(p, o or {}, train_rows, speed_steps, device)
                                  for name, o in picked.items()}})
        return
    nll = FluencyScorer.load().nll if fluency else None
    Path(workdir).mkdir(parents=True, exist_ok=True)
    rows = []
    for name, overrides in picked.items():
        rows += run_design(name, p, overrides or {}, train_rows, valid_rows.to_dict("records"), spec.marks, spec.unit,
                           Path(workdir), device, nll, spec.decoder_names)
        table = cpu_minutes(pd.DataFrame(rows), speeds)
        write(table, out, png)  # after every design: a killed sweep keeps it
    if baseline:
        write_json(differences, {"baseline": baseline, "resamples": resamples, "valid_examples": len(valid_rows),
                                 "differences": paired_differences(table, baseline, resamples,
                                                                   value(p, "seed", int))})


if __name__ == "__main__":
    app()
