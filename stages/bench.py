"""Stage bench: throughput of the trained model's configuration on this machine -> metrics/bench.json (training
examples/s and GFLOP/s next to the matmul peak, sampling responses/s at each of `bench.sample_steps`, the whole default
decoding's responses/s (draws + rerank), peak memory). Every figure is a timing: bench.json is a plain output, not a
metric that `dvc metrics diff` compares."""
import torch
import typer

from pipeline.cli import guard
from pipeline.decoder import Decoder
from pipeline.diffusion.config import SampleConfig, TrainConfig
from pipeline.diffusion.inputs import encode_rows
from pipeline.experiments.bench import BenchParams, bench_rows, run_bench
from pipeline.io import read_frame, write_json
from pipeline.judges import load_judges
from pipeline.params import load_params, section, value
from pipeline.retrieval import RetrieveParams
from pipeline.schemas import CONTROLS
from pipeline.seeding import seed_everything
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(controls: str = "data/signals/controls.parquet", model: str = "models/diffusion", taggers: str = "models/taggers",
         out: str = "metrics/bench.json", params: str = "params.yaml") -> None:
    p = load_params(params)
    cfg, seed = section(p, "bench", BenchParams), value(p, "seed", int)
    train_cfg, sample_cfg = section(p, "train", TrainConfig), section(p, "sample", SampleConfig)
    candidates = sample_cfg.candidates_of(section(p, "retrieve", RetrieveParams).k)
    seed_everything(seed)
    judges = load_judges(sample_cfg.rerank, taggers, section(p, "tag", TagParams).cm_threshold)
    decoder = Decoder.load(model, sample_cfg, judges, "cuda" if torch.cuda.is_available() else "cpu")

    train_rows, test_rows = bench_rows(read_frame(controls, CONTROLS, stage="controls"), train_cfg.batch_size,
                                       cfg.sample_batch, seed)
    figures = run_bench(decoder, encode_rows(train_rows, decoder.vocab, decoder.model.cfg), test_rows, candidates,
                        cfg.train_steps, train_cfg.bf16, cfg.sample_steps, cfg.matmul_size)
    write_json(out, figures)


if __name__ == "__main__":
    app()
