"""Stage sample (foreach mode: retrieved, oracle, edit): one generated response per test example of a control
source -> data/samples/<mode>.parquet (schema SAMPLES: example id, the rank of the candidate it was generated from,
its control sequence, text).

retrieved: data/retrieval/candidates.parquet (the first `sample.candidates` of the k candidates per query), from noise;
oracle: data/retrieval/oracle.parquet (the gold response's own controls), from noise; edit: the first
`sample.edit_candidates` retrieved candidates, each generation starting from the candidate's own response at
`sample.edit_strength` (retrieve-and-edit).
`sample.subset` test examples (seeded; null = all) are sampled, the same ones in every mode. Each candidate gets
`sample.num_samples` draws, and `sample.rerank` keeps one of all the draws of an example's candidates (those whose
whole response fits the model's `max_len`, when one does) by the models of
`pipeline.judges` (SmolLM2, the fluency metric's own model; MiniLM, the encoder under BERTScore; the taggers that score
ACC-CM and ACC-IT): say so next to its figures. The decoding is pipeline.decoder.Decoder, which `respond` calls too.
"""
import pandas as pd
import torch
import typer

from pipeline.cli import guard
from pipeline.controls import control_sequence
from pipeline.decoder import Decoder
from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import SampleConfig
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_frame
from pipeline.judges import load_judges
from pipeline.params import load_params, section, value
from pipeline.schemas import CANDIDATES, CONTROLS, SAMPLES
from pipeline.seeding import seed_everything
from pipeline.subset import control_rows, group_size
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)

MODES = ("retrieved", "oracle", "edit")


@app.command()
@guard
def main(mode: str = typer.Option("retrieved", help="retrieved | oracle | edit"), candidates: str = "data/retrieval/candidates.parquet",
         controls: str = "data/signals/controls.parquet", model: str = "models/diffusion", taggers: str = "models/taggers",
         out: str = "data/samples/retrieved.parquet", params: str = "params.yaml") -> None:
    if mode not in MODES:
        raise PipelineError(f"unknown mode {mode!r}: use one of {', '.join(MODES)}")
    p = load_params(params)
    cfg, seed = section(p, "sample", SampleConfig), value(p, "seed", int)
    if mode == "edit":
        cfg = cfg.for_edit()
    seed_everything(seed)
    net, vocab = load_model(model, "cuda" if torch.cuda.is_available() else "cpu")

    rows = control_rows(read_frame(controls, CONTROLS, stage="controls"),
                        read_frame(candidates, CANDIDATES, stage="retrieve"), cfg, seed, candidates)
    decoder = Decoder(net, vocab, cfg, load_judges(cfg.rerank, taggers, section(p, "tag", TagParams).cm_threshold))
    kept = decoder(rows, seed, edit=mode == "edit", group=group_size(rows))  # (row, text) per example
    write_frame(out, pd.DataFrame({
        "example_id": [rows[i]["example_id"] for i, _ in kept], "rank": [rows[i]["rank"] for i, _ in kept],
        "control_sequence": [control_sequence(rows[i], net.cfg.signals) for i, _ in kept],
        "text": [text for _, text in kept]}), SAMPLES)


if __name__ == "__main__":
    app()
