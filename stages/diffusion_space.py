"""How long each candidate diffusion space stays decodable with no model (pipeline/diffusion/space.py) ->
metrics/diffusion_space.json, and a table on stdout. Not a stage of the DAG: a tool for choosing the continuous
family's space and schedule (docs/diffusion.md, "The continuous family on MiniLM").

    python -m stages.diffusion_space                       # the spaces below, at params.yaml's T and schedule
    python -m stages.diffusion_space --factors 1 --factors 4
    python -m stages.diffusion_space --model models/diffusion   # also a trained model's space (the continuous family)

Spaces: `random128` (the continuous family's own N(0, 1) embedding, emb_dim 128, as initialised), `minilm` (MiniLM's
WordPiece embeddings as they are) and `minilm_std/F` (standardised per dimension, divided by the noise factor F:
model.ContinuousMiniLMModel), each rounded to over the output vocabulary; tokens drawn from the training responses.
Each `--model` folder (a save_model output of the continuous family) adds its trained space: the same curve, and its
embedding rows' norms by how often the token is a training target (space.norm_by_frequency).
"""
import dataclasses

import torch
import typer

from pipeline.cli import guard
from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.model import build_model
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.space import norm_by_frequency, rounding_accuracy
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_json
from pipeline.params import load_params, section, value
from pipeline.schemas import CONTROLS

app = typer.Typer(add_completion=False)

STEPS = (1, 10, 50, 100, 250, 500, 750, 1000, 1250, 1500, 1750, 1900, 1975, 2000)  # at T = 2000; scaled to T
MINILM = {"init": "minilm", "width": 384, "heads": 12, "ffn": 1536, "layers": 3}


def training_tokens(vocab: Vocab, ids: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """n of the training responses' WordPieces ids [M] (those in the output vocabulary), drawn without replacement as
    seeded, as output-vocabulary indices [min(n, M)]."""
    index = torch.as_tensor(vocab.out_index)[ids]
    index = index[index >= 0]
    return index[torch.randperm(len(index), generator=torch.Generator().manual_seed(seed))[:n]]


@app.command()
@guard
def main(controls: str = "data/signals/controls.parquet",
         factors: list[float] = typer.Option([1.0, 2.0, 3.0, 4.0, 8.0]), tokens: int = 10000,
         models: list[str] = typer.Option([], "--model", help="a trained continuous model's folder (repeatable)"),
         out: str = "metrics/diffusion_space.json", params: str = "params.yaml") -> None:
    p = load_params(params)
    seed, base = value(p, "seed", int), section(p, "model", ModelConfig)
    rows = read_frame(controls, CONTROLS, stage="controls")
    rows = rows[rows["split"] == "train"].to_dict("records")
    spaces = {"random128": dataclasses.replace(base, family="continuous", init="random", emb_dim=128),
              "minilm": None,
              **{f"minilm_std/{f:g}": dataclasses.replace(base, family="continuous", emb_dim=384, noise_factor=f,
                                                          self_condition=False, **MINILM) for f in factors}}
    vocab = Vocab.build(rows, base)
    ids = torch.tensor([int(i) for r in rows for i in r["subword_ids"]])
    picked = training_tokens(vocab, ids, tokens, seed)  # [N]
    schedule = Schedule.from_config(base)
    steps = sorted({max(1, round(s * len(schedule) / 2000)) for s in STEPS})
    curves = {}
    for name, cfg in spaces.items():
        torch.manual_seed(seed)
        if cfg is None:  # MiniLM's own rows: those of the masked default's (tied) embedding
            model = build_model(dataclasses.replace(base, family="masked", **MINILM), vocab)
            table = model.embedding.weight[model.out_ids].detach()
        else:
            table = build_model(cfg, vocab).output_embeddings().detach()
        curves[name] = rounding_accuracy(table, picked, schedule, steps, seed)
        print(f"{name:>16}: " + " ".join(f"t{s}={a:.2f}" for s, a in curves[name].items()))
    trained = {}
    for folder in models:
        net, its_vocab = load_model(folder)
        if not hasattr(net, "output_embeddings"):
            raise PipelineError(f"{folder}: a {net.cfg.family} model has no diffusion space: give a continuous one")
        targets = training_tokens(its_vocab, ids, len(ids), seed)  # every training target, shuffled
        counts = torch.bincount(targets, minlength=len(its_vocab.out_ids))  # [V_out]
        table = net.output_embeddings().detach()
        trained[folder] = {"config": net.cfg.to_dict(), "norm_by_frequency": norm_by_frequency(table, counts),
                           "rounding_accuracy": rounding_accuracy(table, targets[:tokens], schedule, steps, seed)}
        print(f"{folder}: norms by count " + " ".join(f"{b['counts']}:{b['mean_norm']}"
                                                     for b in trained[folder]["norm_by_frequency"]))
    write_json(out, {"T": len(schedule), "schedule": base.schedule, "tokens": len(picked), "steps": steps,
                     "rounding_accuracy": curves, **({"trained": trained} if trained else {})})


if __name__ == "__main__":
    app()
