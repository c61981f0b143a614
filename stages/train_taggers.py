"""Stage train_taggers@<name>: train one tagger model (cm, intent, emotion) -> models/taggers/<name>/.

Fits the frozen variant; with `train_taggers.finetune` also the fine-tuned one, which is then the one saved (and used
downstream). metrics.json holds both side by side: per head, accuracy, macro-F1 and per-label F1 on its own valid and
test splits. The time each variant took goes to metrics/timings/train_taggers_<name>.json.
"""
import functools
import time
from pathlib import Path

import torch
import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, EncodeParams, encode_texts
from pipeline.errors import PipelineError
from pipeline.finetune import train_finetuned
from pipeline.io import read_frame, write_json
from pipeline.models import ENCODER_NAME
from pipeline.params import load_params, section, value
from pipeline.progress import log
from pipeline.schemas import DIALOGUES
from pipeline.seeding import seed_everything
from pipeline.tagger_data import cm_task, emotion_task, intent_task, with_situations
from pipeline.taggers import TAGGERS, TaggerParams, train_frozen

app = typer.Typer(add_completion=False)


def timed(fn, *args) -> tuple:
    """fn(*args) and its cost: (result, {"seconds": wall, "cpu_seconds": process CPU time, all threads})."""
    wall, cpu = time.monotonic(), time.process_time()
    out = fn(*args)
    return out, {"seconds": round(time.monotonic() - wall, 1), "cpu_seconds": round(time.process_time() - cpu, 1)}


@app.command()
@guard
def main(name: str = typer.Option(..., help=f"one of {', '.join(TAGGERS)}"),
         epitome: str = "data/raw/epitome", intents: str = "data/raw/intents/lexically_extended_intent_data",
         dialogues: str = "data/prepared/dialogues.parquet", embeddings: str = "data/embeddings",
         out: str = typer.Option(None, help="default: models/taggers/<name>"),
         timings: str = typer.Option(None, help="default: metrics/timings/train_taggers_<name>.json"),
         params: str = "params.yaml") -> None:
    if name not in TAGGERS:
        raise PipelineError(f"unknown tagger {name!r}: use one of {', '.join(TAGGERS)}")
    p = load_params(params)
    cfg, enc = section(p, "train_taggers", TaggerParams), section(p, "encode", EncodeParams)
    seed = value(p, "seed", int)
    seed_everything(seed)
    encoder = {"name": ENCODER_NAME, "max_seq_length": enc.max_seq_length, "frozen": True}
    if name == "emotion":  # ED contexts: already in the shared store, encoded with the same settings
        ed = read_frame(dialogues, DIALOGUES, stage="prepare")
        splits = emotion_task(ed)
        embed = EmbeddingStore(embeddings).lookup
    else:  # EPITOME / EmpatheticIntents texts are not ED texts: encode them here
        splits = intent_task(intents) if name == "intent" else cm_task(epitome, seed)
        embed = functools.partial(encode_texts, batch_size=enc.batch_size, max_seq_length=enc.max_seq_length)
    (tagger, frozen), cost = timed(train_frozen, name, splits, embed, cfg, encoder, seed)
    report = {"tagger": name, "used": "frozen", "n_train": len(splits["train"]), "frozen": frozen}
    costs = {"threads": torch.get_num_threads(), "frozen": cost}
    if cfg.finetune:
        if name == "emotion" and cfg.emotion_situations:  # the frozen variant stays on the stored contexts alone
            splits = with_situations(splits, ed)
            report["n_train_finetuned"] = len(splits["train"])
        (tagger, report["finetuned"]), cost = timed(train_finetuned, name, splits, cfg, encoder, seed)
        report["used"] = "finetuned"
        seen = report["finetuned"]["examples_seen"]  # per second of the whole fine-tune, valid and test included
        costs["finetuned"] = {**cost, "examples_seen": seen,
                              "examples_per_s": round(seen / max(cost["seconds"], 1e-9), 1)}
        log(f"[{name}] fine-tuned in {cost['seconds'] / 60:.1f} min ({cost['cpu_seconds'] / 60:.1f} CPU min)")
    out_dir = Path(out or f"models/taggers/{name}")
    tagger.save(out_dir)
    write_json(out_dir / "metrics.json", report)
    write_json(timings or f"metrics/timings/train_taggers_{name}.json", costs)


if __name__ == "__main__":
    app()
