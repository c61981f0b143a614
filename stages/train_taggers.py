"""Stage train_taggers@<name>: fit one tagger (cm_er, cm_ip, cm_ex, intent, emotion) -> models/taggers/<name>/.

Writes the tagger (head.joblib, tagger.json) and metrics.json (accuracy and macro-F1 on its own valid and test splits).
"""
import functools
from pathlib import Path

import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, EncodeParams, encode_texts
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_json
from pipeline.models import ENCODER_NAME
from pipeline.params import load_params, section, value
from pipeline.schemas import DIALOGUES
from pipeline.seeding import seed_everything
from pipeline.tagger_data import cm_task, emotion_task, intent_task
from pipeline.taggers import TAGGERS, TaggerParams, train_tagger

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(name: str = typer.Option(..., help=f"one of {', '.join(TAGGERS)}"),
         epitome: str = "data/raw/epitome", intents: str = "data/raw/intents/lexically_extended_intent_data",
         dialogues: str = "data/prepared/dialogues.parquet", embeddings: str = "data/embeddings",
         out: str = typer.Option(None, help="default: models/taggers/<name>"), params: str = "params.yaml") -> None:
    if name not in TAGGERS:
        raise PipelineError(f"unknown tagger {name!r}: use one of {', '.join(TAGGERS)}")
    p = load_params(params)
    cfg, enc = section(p, "train_taggers", TaggerParams), section(p, "encode", EncodeParams)
    seed = value(p, "seed", int)
    seed_everything(seed)
    encoder = {"name": ENCODER_NAME, "max_seq_length": enc.max_seq_length, "frozen": True}
    if name == "emotion":  # ED contexts: already in the shared store, encoded with the same settings
        splits = emotion_task(read_frame(dialogues, DIALOGUES, stage="prepare"))
        embed = EmbeddingStore(embeddings).lookup
    else:  # EPITOME / EmpatheticIntents texts are not ED texts: encode them here
        splits = intent_task(intents) if name == "intent" else cm_task(epitome, name.removeprefix("cm_"), seed)
        embed = functools.partial(encode_texts, batch_size=enc.batch_size, max_seq_length=enc.max_seq_length)
    tagger, metrics = train_tagger(name, splits, embed, cfg, encoder, seed)
    out_dir = Path(out or f"models/taggers/{name}")
    tagger.save(out_dir)
    write_json(out_dir / "metrics.json", metrics)


if __name__ == "__main__":
    app()
