"""Stage segment: spaCy words (lemma, POS) and sentences of every ED response -> data/prepared/segments.parquet."""
import pyarrow as pa
import typer

from pipeline.cli import guard
from pipeline.io import read_frame, write_table
from pipeline.params import load_params, section
from pipeline.schemas import DIALOGUES, SEGMENTS
from pipeline.segment import SegmentParams, segment_texts

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", out: str = "data/prepared/segments.parquet",
         params: str = "params.yaml") -> None:
    cfg = section(load_params(params), "segment", SegmentParams)
    df = read_frame(dialogues, DIALOGUES, stage="prepare")
    rows = segment_texts(df["response"], batch_size=cfg.batch_size, total=len(df))
    table = pa.Table.from_pylist([{"example_id": eid, **row} for eid, row in zip(df["example_id"], rows)])
    write_table(out, table, SEGMENTS)


if __name__ == "__main__":
    app()
