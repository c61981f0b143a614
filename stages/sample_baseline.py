"""Stage sample_baseline: one response of a trained baseline per scored test example -> data/samples/baselines/<name>
.parquet (schema SAMPLES). The examples are stage sample's (`sample.split`, `sample.subset`, seeded), each answered
from its context; transfertransfo_controls is also given the controls of the example's top-1 retrieved candidate,
the controls diffusemp generates from by default (the candidate's rank is recorded)."""
import pandas as pd
import typer

from pipeline.baselines.decoding import BaselineDecoder, NucleusParams
from pipeline.baselines.fit import BaselinesParams, check_name
from pipeline.baselines.prompts import controls_text
from pipeline.cli import guard
from pipeline.diffusion.config import SampleConfig
from pipeline.io import read_frame, write_frame
from pipeline.params import check, load_params, section, value
from pipeline.schemas import CANDIDATES, CONTROLS, SAMPLES
from pipeline.seeding import seed_everything
from pipeline.subset import control_rows

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(name: str = typer.Option(..., help="trs | transfertransfo | transfertransfo_controls"),
         candidates: str = "data/retrieval/candidates.parquet", controls: str = "data/signals/controls.parquet",
         model: str = typer.Option(..., help="the baseline's model folder"),
         out: str = typer.Option(..., help="samples (Parquet)"), params: str = "params.yaml") -> None:
    check_name(name)
    p = load_params(params)
    seed, cfg = value(p, "seed", int), section(p, "baselines", BaselinesParams)
    seed_everything(seed)
    rows = [r for r in control_rows(read_frame(controls, CONTROLS, stage="controls"),
                                    read_frame(candidates, CANDIDATES, stage="retrieve"),
                                    section(p, "sample", SampleConfig), seed, candidates) if r["rank"] == 0]
    decoder = BaselineDecoder(name, model, check(cfg.lm_sampling, NucleusParams, "baselines.lm_sampling"))
    texts = decoder(rows, seed)
    given = name == "transfertransfo_controls"
    write_frame(out, pd.DataFrame({
        "example_id": [r["example_id"] for r in rows], "rank": [r["rank"] for r in rows],
        "control_sequence": [controls_text(r) if given else "" for r in rows], "text": texts}), SAMPLES)


if __name__ == "__main__":
    app()
