"""Stage sample (foreach mode: retrieved, oracle, edit): one generated response per (test example, candidate) of a
control source -> data/samples/<mode>.parquet (schema SAMPLES: example id, candidate rank, control sequence, text).

retrieved: data/retrieval/candidates.parquet (k candidates per query: the paper's diverse responses), from noise;
oracle: data/retrieval/oracle.parquet (the gold response's own controls), from noise; edit: the retrieved candidates
again, each generation starting from the candidate's own response at `sample.edit_strength` (retrieve-and-edit).
`sample.subset` test examples (seeded; null = all) are sampled, the same ones in every mode.
"""
import pandas as pd
import torch
import typer

from pipeline.cli import guard
from pipeline.controls import control_sequence
from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import SampleConfig
from pipeline.diffusion.generate import eval_subset, generate
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_frame
from pipeline.params import load_params, section, value
from pipeline.schemas import CANDIDATES, CONTROLS, SAMPLES
from pipeline.seeding import seed_everything

app = typer.Typer(add_completion=False)

MODES = ("retrieved", "oracle", "edit")


@app.command()
@guard
def main(mode: str = typer.Option("retrieved", help="retrieved | oracle | edit"), candidates: str = "data/retrieval/candidates.parquet",
         controls: str = "data/signals/controls.parquet", model: str = "models/diffusion",
         out: str = "data/samples/retrieved.parquet", params: str = "params.yaml") -> None:
    if mode not in MODES:
        raise PipelineError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    p = load_params(params)
    cfg, seed = section(p, "sample", SampleConfig), value(p, "seed", int)
    seed_everything(seed)
    net, vocab = load_model(model, "cuda" if torch.cuda.is_available() else "cpu")

    ctrl = read_frame(controls, CONTROLS, stage="controls")
    split = ctrl[ctrl["split"] == cfg.split]
    ids = eval_subset(split["example_id"], cfg.subset, seed)
    cands = read_frame(candidates, CANDIDATES, stage="retrieve")
    cands = cands[cands["example_id"].isin(set(ids))].sort_values(["example_id", "rank"], ignore_index=True)
    missing = sorted(set(ids) - set(cands["example_id"]))
    if missing:
        raise PipelineError(f"{candidates} has no {mode} candidates for {len(missing)} {cfg.split} examples (e.g. "
                            f"{missing[0]}): rebuild it with `dvc repro retrieve`")

    context = dict(zip(split["example_id"], split["context"]))
    rows = [{**row, "context": context[row["example_id"]]} for row in cands.to_dict("records")]
    texts = generate(net, vocab, rows, cfg, seed, strength=cfg.edit_strength if mode == "edit" else 1.0)
    write_frame(out, pd.DataFrame({
        "example_id": cands["example_id"], "rank": cands["rank"],
        "control_sequence": [control_sequence(r, net.cfg.signals) for r in rows], "text": texts}), SAMPLES)


if __name__ == "__main__":
    app()
