"""Off the DAG: one tagger fine-tuned under a speed lever of issue 34, against the model stage train_taggers saved
(pipeline/experiments/tagger_levers.py) -> metrics/tagger_levers/<name>_<lever>.json: seconds per step of both
(interleaved rounds on the same batches), the lever's fine-tuning minutes and epochs, and the held-out macro-F1 of both
with the paired bootstrap interval of the valid and test differences. Run it alone on the machine, after
`dvc repro train_taggers`:
    for name in cm intent emotion; do python -m stages.tagger_levers --name $name; done
`--lever today` fine-tunes as the stage does: its model should score as the saved one (a check of this harness).
`lever_minutes` is the fine-tuning (with its prediction over valid after each epoch and over test) plus one more
prediction over valid and test, under the lever's attention kernel.
"""
import time

import numpy as np
import torch
import typer

from pipeline.cli import guard
from pipeline.errors import PipelineError
from pipeline.experiments.bench import machine
from pipeline.diffusion.trainer import training_forward
from pipeline.experiments.tagger_levers import LEVERS, labels_of, lever_encoder, paired_macro_f1, step_seconds
from pipeline.finetune import FinetunedTagger, train_finetuned
from pipeline.io import read_frame, write_json
from pipeline.models import ENCODER_NAME
from pipeline.params import load_params, section, value
from pipeline.precision import precision_name, use_bf16
from pipeline.schemas import DIALOGUES
from pipeline.seeding import seed_everything
from pipeline.tagger_data import cm_task, emotion_task, intent_task, with_situations
from pipeline.taggers import TAGGERS, TaggerParams

app = typer.Typer(add_completion=False)


def predictions(tagger: FinetunedTagger, tokens: dict) -> dict[str, dict[str, np.ndarray]]:
    """{split: {head: predicted label indices [n]}} of the valid and test splits' tokens."""
    return {s: {h: probs.argmax(1) for h, probs in tagger.proba(tokens[s]).items()} for s in ("valid", "test")}


@app.command()
@guard
def main(name: str = typer.Option(..., help=f"one of {', '.join(TAGGERS)}"),
         lever: str = typer.Option("no_dropout", help=f"one of {', '.join(LEVERS)}"),
         epitome: str = "data/raw/epitome", intents: str = "data/raw/intents/lexically_extended_intent_data",
         dialogues: str = "data/prepared/dialogues.parquet", taggers: str = "models/taggers",
         out: str = typer.Option(None, help="default: metrics/tagger_levers/<name>_<lever>.json"),
         params: str = "params.yaml",
         batches: int = typer.Option(8, help="training batches timed per lever and round"),
         rounds: int = typer.Option(3, help="interleaved timing rounds (the median is kept)"),
         resamples: int = typer.Option(1000, help="bootstrap resamples of the valid and test differences")) -> None:
    if name not in TAGGERS or lever not in LEVERS:
        raise PipelineError(f"--name {name} --lever {lever}: name from {', '.join(TAGGERS)}, lever from "
                            f"{', '.join(LEVERS)}")
    p = load_params(params)
    cfg = section(p, "train_taggers", TaggerParams)
    seed = value(p, "seed", int)
    if not cfg.finetune:
        raise PipelineError("train_taggers.finetune is false: the levers are of the fine-tuned variant")
    saved = FinetunedTagger.load(f"{taggers}/{name}")
    if name == "emotion":  # the splits stage train_taggers fine-tunes on
        ed = read_frame(dialogues, DIALOGUES, stage="prepare")
        splits = with_situations(emotion_task(ed), ed) if cfg.emotion_situations else emotion_task(ed)
    else:
        splits = intent_task(intents) if name == "intent" else cm_task(epitome, seed)
    pair = TAGGERS[name].inputs == "pair"
    tokens = {s: saved.tokenize(df["text"], df["context"] if pair else None) for s, df in splits.items()}
    y = {s: labels_of(df, name) for s, df in splits.items()}
    bf16 = use_bf16(cfg.bf16, "cpu")

    seed_everything(seed)
    steps = step_seconds(name, tokens["train"], y["train"], cfg.batch_size, bf16, sorted({"today", lever}), batches,
                         rounds, seed)
    start = time.monotonic()
    # the lever's attention kernel alone: train_finetuned and proba set their own autocast
    with training_forward(torch.device("cpu"), False, LEVERS[lever].cpu_attention):
        tagger, report = train_finetuned(name, splits, cfg, {"name": ENCODER_NAME, "frozen": False}, seed,
                                         lever_encoder(LEVERS[lever]))
        predicted = predictions(tagger, tokens)
    minutes = (time.monotonic() - start) / 60
    before = predictions(saved, tokens)
    write_json(out or f"metrics/tagger_levers/{name}_{lever}.json", {
        "tagger": name, "lever": lever, "machine": machine(torch.device("cpu")), "precision": precision_name(bf16),
        "step_seconds": steps,
        "speedup": round(steps["today"]["seconds_per_step"] / steps[lever]["seconds_per_step"], 3),
        "lever_minutes": round(minutes, 1), "lever_epochs": report["epochs"], "lever_best_epoch": report["best_epoch"],
        "macro_f1": {s: paired_macro_f1(y[s], before[s], predicted[s], resamples) for s in ("valid", "test")},
        "how": "macro_f1: a = the model of stage train_taggers (models/taggers), b = the lever's; mean over heads; "
               "difference b - a with the paired bootstrap 95% interval over the split's examples",
        "examples": {s: len(splits[s]) for s in ("valid", "test")}})


if __name__ == "__main__":
    app()
