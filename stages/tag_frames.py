"""Stage tag_frames: one SF token per word of every ED response (FrameNet 1.7 lexicon + MiniLM disambiguation)
-> data/signals/frames.parquet (with the WordPiece alignment), models/frames/ (definition vectors), metrics/frames.json,
and its speed to metrics/timings/tag_frames.json (kept out of the metrics that `dvc metrics diff` compares)."""
import time

import pandas as pd
import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, EncodeParams
from pipeline.errors import PipelineError
from pipeline.frames import FrameTagger, frame_metrics
from pipeline.io import read_frame, write_frame, write_json
from pipeline.params import load_params, section
from pipeline.progress import log, progress
from pipeline.schemas import DIALOGUES, FRAMES, SEGMENTS
from pipeline.segment import wordpiece_align

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", segments: str = "data/prepared/segments.parquet",
         embeddings: str = "data/embeddings", framenet: str = "data/raw/framenet", models: str = "models/frames",
         out: str = "data/signals/frames.parquet", metrics: str = "metrics/frames.json",
         timings: str = "metrics/timings/tag_frames.json", params: str = "params.yaml") -> None:
    cfg = section(load_params(params), "encode", EncodeParams)
    df = read_frame(dialogues, DIALOGUES, stage="prepare")
    seg = read_frame(segments, SEGMENTS, stage="segment").set_index("example_id").reindex(df["example_id"])
    if seg["words"].isna().any():
        raise PipelineError(f"{segments} does not cover every dialogues row: rebuild it with `dvc repro segment`")
    rows = seg.reset_index().to_dict("records")
    tagger = FrameTagger.build(framenet, models, embed=EmbeddingStore(embeddings).lookup,
                               batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length)

    start = time.monotonic()
    analyses = tagger.analyse(rows, list(df["response"]))
    seconds = time.monotonic() - start
    aligned = [wordpiece_align(list(r["words"])) for r in progress(rows, desc="wordpiece")]
    frames = pd.DataFrame({
        "example_id": df["example_id"],
        "words": seg["words"].to_numpy(),
        "sf": [a.sf for a in analyses],
        "sf_first": [a.sf_first for a in analyses],
        "subword_ids": [ids for ids, _ in aligned],
        "subword_word": [word for _, word in aligned],
    })
    write_frame(out, frames, FRAMES)
    report = frame_metrics(rows, analyses)
    write_json(metrics, report)
    docs_per_s = round(len(rows) / max(seconds, 1e-9), 1)
    write_json(timings, {"docs": len(rows), "seconds": round(seconds, 1), "docs_per_s": docs_per_s})
    log(f"[tag_frames] {len(rows)} responses in {seconds:.0f}s ({docs_per_s} docs/s); "
        f"{report['content_words_with_frame']:.1%} of content words framed")


if __name__ == "__main__":
    app()
