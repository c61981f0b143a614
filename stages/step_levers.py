"""Off the DAG: one default training step timed and profiled as it trains and under each speed lever of issue 34
(pipeline/experiments/step_levers.py) -> metrics/timings/step_levers.json (timings: a plain file, not a DVC metric).
Run it alone on the machine (another process on the same cores distorts every figure):
    python -m stages.step_levers                      # every lever: 3 interleaved rounds of 5 timed steps each
    python -m stages.step_levers --levers today,sdpa_auto --steps 10 --rounds 5
"""
import torch
import typer

from pipeline.cli import guard
from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import TrainConfig
from pipeline.diffusion.inputs import collate, encode_rows
from pipeline.diffusion.schedule import Schedule
from pipeline.errors import PipelineError
from pipeline.experiments.bench import BenchParams, bench_rows, machine, matmul_peak_gflops
from pipeline.experiments.step_levers import LEVERS, lever_figures
from pipeline.io import read_frame, write_json
from pipeline.params import load_params, section, value
from pipeline.precision import precision_name, use_bf16
from pipeline.schemas import CONTROLS
from pipeline.seeding import seed_everything

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(controls: str = "data/signals/controls.parquet", model: str = "models/diffusion",
         out: str = "metrics/timings/step_levers.json", params: str = "params.yaml",
         levers: str = typer.Option(",".join(LEVERS), help="comma-separated levers"),
         steps: int = typer.Option(5, help="timed (and profiled) steps per lever and round"),
         rounds: int = typer.Option(3, help="interleaved rounds: every lever once per round; the median is kept"),
         top: int = typer.Option(8, help="ops listed per profile")) -> None:
    names = [name for name in levers.split(",") if name]
    unknown = [name for name in names if name not in LEVERS]
    if unknown or steps < 1 or rounds < 1:
        raise PipelineError(f"--levers {levers} --steps {steps} --rounds {rounds}: levers from {', '.join(LEVERS)}; "
                            "steps and rounds >= 1")
    p = load_params(params)
    train_cfg, bench = section(p, "train", TrainConfig), section(p, "bench", BenchParams)
    seed = value(p, "seed", int)
    seed_everything(seed)
    net, vocab = load_model(model, "cuda" if torch.cuda.is_available() else "cpu")
    device = next(net.parameters()).device
    bf16 = use_bf16(train_cfg.bf16, device)
    rows, _ = bench_rows(read_frame(controls, CONTROLS, stage="controls"), train_cfg.batch_size, 0, seed)
    batch = collate(encode_rows(rows, vocab, net.cfg)).to(device)
    peak = matmul_peak_gflops(device, bf16, bench.matmul_size)
    figures = lever_figures(net, batch, Schedule.from_config(net.cfg), bf16, peak, steps, rounds, top, names)
    write_json(out, {"machine": machine(device), "precision": precision_name(bf16),
                     "matmul_peak_gflops": round(peak, 2), "levers": figures})


if __name__ == "__main__":
    app()
