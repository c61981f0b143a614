"""Stage tag: CM, per-sentence intent and context emotion of every ED row -> data/signals/tags.parquet; assembles
metrics/taggers.json (each tagger's held-out scores beside the paper's Table 1, plus the EI peer check)."""
import time

import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, align_segments
from pipeline.io import read_frame, read_json, write_frame, write_json
from pipeline.params import load_params, section
from pipeline.progress import log
from pipeline.schemas import DIALOGUES, SEGMENTS, TAGS
from pipeline.taggers import TAGGERS
from pipeline.tagging import TagParams, Taggers, ei_peer_check

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", segments: str = "data/prepared/segments.parquet",
         embeddings: str = "data/embeddings", models: str = "models/taggers",
         ei_annotated: str = "data/raw/intents/empatheticdialogues_annotated",
         out: str = "data/signals/tags.parquet", metrics: str = "metrics/taggers.json", params: str = "params.yaml") -> None:
    cfg = section(load_params(params), "tag", TagParams)
    start = time.monotonic()
    df = read_frame(dialogues, DIALOGUES, stage="prepare")
    seg = align_segments(df, read_frame(segments, SEGMENTS, stage="segment"))
    taggers = Taggers.load(models)
    store = EmbeddingStore(embeddings)
    tags = taggers.tag(df["context"], df["response"], seg.to_dict("records"), embed=store.lookup,
                       cm_threshold=cfg.cm_threshold)
    tags.insert(0, "example_id", df["example_id"].to_numpy())
    write_frame(out, tags, TAGS)

    report = {"taggers": {}}
    for name, spec in TAGGERS.items():
        own = read_json(f"{models}/{name}/metrics.json", stage=f"train_taggers@{name}")
        report["taggers"][name] = {"test": own["test"], "valid": own["valid"],
                                   "paper": dict(zip(("accuracy", "f1"), spec.paper)) if spec.paper else None}
    report["ei_peer_check"] = ei_peer_check(ei_annotated, df, taggers.taggers["intent"], store.lookup)
    write_json(metrics, report)
    log(f"[tag] {len(df)} rows tagged in {time.monotonic() - start:.0f}s")


if __name__ == "__main__":
    app()
