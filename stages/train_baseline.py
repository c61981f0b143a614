"""Stage train_baseline: train one of Table 2's baselines (trs, transfertransfo, transfertransfo_controls) on ED's
training pairs -> its model folder and its training summary (steps, minutes, first and last losses, precision) in
--timings. Resumable: the training state is checkpointed to --checkpoint every `baselines.checkpoint_every_s`.
transfertransfo_controls is trained with diffusemp's condition dropout (`train.given_levels`, `train.given_weights`)."""
from pathlib import Path

import typer

from pipeline.baselines.fit import BaselinesParams, fit
from pipeline.cli import guard
from pipeline.diffusion.config import TrainConfig
from pipeline.io import read_frame, write_json
from pipeline.params import load_params, section, value
from pipeline.schemas import CONTROLS
from pipeline.seeding import seed_everything

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(name: str = typer.Option(..., help="trs | transfertransfo | transfertransfo_controls"),
         controls: str = "data/signals/controls.parquet", out: str = typer.Option(..., help="model folder"),
         checkpoint: str = typer.Option(..., help="training state, kept for a resume"),
         timings: str = typer.Option(..., help="training summary (JSON)"), params: str = "params.yaml") -> None:
    all_params = load_params(params)
    seed = value(all_params, "seed", int)
    seed_everything(seed)
    dropout = section(all_params, "train", TrainConfig)
    levels, weights = ((dropout.given_levels, dropout.given_weights) if name == "transfertransfo_controls"
                       else ((), ()))
    summary = fit(name, read_frame(controls, CONTROLS, stage="controls"),
                  section(all_params, "baselines", BaselinesParams), seed, Path(out), Path(checkpoint), levels, weights)
    write_json(timings, summary)


if __name__ == "__main__":
    app()
