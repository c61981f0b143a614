"""Stage tag: CM, per-sentence intent and context emotion of every ED row -> data/signals/tags.parquet, with the taggers
train_taggers saved (fine-tuned or frozen); assembles metrics/taggers.json (both variants' held-out scores per head
beside the paper's Table 1, plus the EI peer check). Its time goes to metrics/timings/tag.json."""
import time

import torch
import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, align_segments
from pipeline.io import read_frame, read_json, write_frame, write_json
from pipeline.params import load_params, section
from pipeline.precision import cpu_capability, native_bf16, precision_name
from pipeline.progress import log
from pipeline.schemas import DIALOGUES, SEGMENTS, TAGS
from pipeline.taggers import PAPER, TAGGERS
from pipeline.tagging import TagParams, Taggers, ei_peer_check

app = typer.Typer(add_completion=False)
VARIANTS = ("frozen", "finetuned")


def held_out(variant: dict) -> dict:
    """A head's valid and test scores without the per-label F1 (they stay in models/taggers/<name>/metrics.json)."""
    return {split: {k: v for k, v in variant[split].items() if k != "per_class_f1"} for split in ("test", "valid")}


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", segments: str = "data/prepared/segments.parquet",
         embeddings: str = "data/embeddings", models: str = "models/taggers",
         ei_annotated: str = "data/raw/intents/empatheticdialogues_annotated",
         out: str = "data/signals/tags.parquet", metrics: str = "metrics/taggers.json",
         timings: str = "metrics/timings/tag.json", params: str = "params.yaml") -> None:
    cfg = section(load_params(params), "tag", TagParams)
    wall, cpu = time.monotonic(), time.process_time()
    df = read_frame(dialogues, DIALOGUES, stage="prepare")
    seg = align_segments(df, read_frame(segments, SEGMENTS, stage="segment"))
    taggers = Taggers.load(models, embed=EmbeddingStore(embeddings).lookup)  # the store serves frozen taggers only
    tags = taggers.tag(df["context"], df["response"], seg.to_dict("records"), cm_threshold=cfg.cm_threshold)
    tags.insert(0, "example_id", df["example_id"].to_numpy())
    write_frame(out, tags, TAGS)
    seconds = time.monotonic() - wall

    report = {"taggers": {}, "precision": {"cpu_capability": cpu_capability(), "native_bf16": native_bf16("cpu")}}
    for name, spec in TAGGERS.items():
        own = read_json(f"{models}/{name}/metrics.json", stage=f"train_taggers@{name}")
        trained = own[own["used"]].get("precision", {}).get("precision", "float32")  # frozen heads: float32 features
        report["precision"] |= {f"{name}_train": trained, f"{name}_tag": precision_name(taggers.taggers[name].bf16)}
        for head in spec.heads:
            report["taggers"][head] = {"used": own["used"],
                                       **{v: held_out(own[v]["heads"][head]) for v in VARIANTS if v in own},
                                       "paper": dict(zip(("accuracy", "f1"), PAPER[head])) if head in PAPER else None}
    report["ei_peer_check"] = ei_peer_check(ei_annotated, df, taggers.taggers["intent"])
    write_json(metrics, report)
    write_json(timings, {"rows": len(df), "threads": torch.get_num_threads(), "tag_seconds": round(seconds, 1),
                         "rows_per_s": round(len(df) / max(seconds, 1e-9), 1),
                         "total_seconds": round(time.monotonic() - wall, 1),
                         "cpu_seconds": round(time.process_time() - cpu, 1)})
    log(f"[tag] {len(df)} rows tagged in {seconds:.0f}s, {time.monotonic() - wall:.0f}s with the peer check")


if __name__ == "__main__":
    app()
