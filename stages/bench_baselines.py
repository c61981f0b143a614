"""Stage bench_baselines: responses per second of diffusemp's default decoding and of each baseline's, on the same
`baselines.bench_responses` test rows in one run -> metrics/bench_baselines.json (timings: a plain output)."""
import typer

from pipeline.baselines import SYSTEMS
from pipeline.baselines.decoding import BaselineDecoder, NucleusParams
from pipeline.baselines.fit import BaselinesParams
from pipeline.baselines.speed import speed_table
from pipeline.cli import guard
from pipeline.decoder import Decoder
from pipeline.diffusion.config import SampleConfig
from pipeline.io import read_frame, write_json
from pipeline.judges import load_judges
from pipeline.params import check, load_params, section, value
from pipeline.retrieval import RetrieveParams
from pipeline.schemas import CANDIDATES, CONTROLS
from pipeline.seeding import seed_everything
from pipeline.subset import control_rows
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(candidates: str = "data/retrieval/candidates.parquet", controls: str = "data/signals/controls.parquet",
         model: str = "models/diffusion", taggers: str = "models/taggers", baselines_dir: str = "models/baselines",
         out: str = "metrics/bench_baselines.json", params: str = "params.yaml") -> None:
    p = load_params(params)
    seed, cfg, sampling = value(p, "seed", int), section(p, "baselines", BaselinesParams), section(p, "sample", SampleConfig)
    seed_everything(seed)
    rows = [r for r in control_rows(read_frame(controls, CONTROLS, stage="controls"),
                                    read_frame(candidates, CANDIDATES, stage="retrieve"), sampling, seed, candidates)
            if r["rank"] == 0][:cfg.bench_responses]
    diffusemp = Decoder.load(model, sampling, load_judges(sampling.rerank, taggers, section(p, "tag", TagParams).cm_threshold))
    nucleus = check(cfg.lm_sampling, NucleusParams, "baselines.lm_sampling")
    baselines = {name: BaselineDecoder(name, f"{baselines_dir}/{name}", nucleus) for name in SYSTEMS}
    group = sampling.candidates_of(section(p, "retrieve", RetrieveParams).k)  # as stage bench times it
    write_json(out, speed_table(diffusemp, group, {name: (lambda rows, d=d: d(rows, seed)) for name, d in baselines.items()},
                                rows))


if __name__ == "__main__":
    app()
