"""Stage train_diffusion: train the DiffusEmp model on the gold controls of the training split -> models/diffusion/
(config.json, vocab.json, model.pt with the EMA weights), metrics/train.json, plots/train_loss.csv.

Resumable: the training state is checkpointed to --checkpoint every few minutes; rerunning after a kill continues from
it. Data-parallel on N processes: `torchrun --nproc_per_node N -m stages.train_diffusion` (gloo on CPU, nccl on GPU).
"""
import pandas as pd
import torch.distributed as dist
import typer

from pipeline.cli import guard
from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.trainer import (TrainConfig, config_fingerprint, encode_rows, init_distributed,
                                        rank_and_world, save_model, train)
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_frame, write_json
from pipeline.params import load_params, section
from pipeline.schemas import CONTROLS
from pipeline.seeding import seed_everything

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(controls: str = "data/signals/controls.parquet", out: str = "models/diffusion",
         checkpoint: str = "models/diffusion_checkpoint.pt", metrics: str = "metrics/train.json",
         plot: str = "plots/train_loss.csv", params: str = "params.yaml") -> None:
    p = load_params(params)
    model_cfg = ModelConfig.from_dict(section(p, "model"))
    train_cfg = TrainConfig.from_dict(section(p, "train"))
    device = init_distributed()
    seed_everything(p["seed"])  # the same initial weights on every rank

    df = read_frame(controls, CONTROLS, stage="controls")
    train_rows = df[df["split"] == "train"].to_dict("records")
    if not train_rows:
        raise PipelineError(f"{controls} has no train rows: rebuild it with `dvc repro controls`")
    valid_df = df[df["split"] == "valid"]
    valid_rows = valid_df.sample(n=min(train_cfg.valid_examples, len(valid_df)), random_state=p["seed"])
    valid_rows = valid_rows.to_dict("records")
    vocab = Vocab.build(train_rows, model_cfg)
    examples = encode_rows(train_rows, vocab, model_cfg)
    valid = encode_rows(valid_rows, vocab, model_cfg)

    model = DiffusEmpModel(model_cfg, vocab).to(device)
    result = train(model, examples, Schedule(model_cfg.T, model_cfg.noise_offset), train_cfg, p["seed"],
                   checkpoint, config_fingerprint(model_cfg, train_cfg, p["seed"], vocab), valid)
    if rank_and_world()[0] == 0:
        save_model(out, result.ema, model_cfg, vocab)
        write_json(metrics, {**result.summary, "vocab_size": vocab.size, "output_vocab": len(vocab.out_ids)})
        with atomic_path(plot, ".csv") as tmp:
            pd.DataFrame(result.history).to_csv(tmp, index=False)
    if dist.is_initialized():
        dist.destroy_process_group()


if __name__ == "__main__":
    app()
