"""Stage prepare: ED release CSVs -> one row per listener turn (data/prepared/dialogues.parquet) + metrics/data.json."""
import pyarrow as pa
import typer

from pipeline.cli import guard
from pipeline.datasets import ED_SPLITS
from pipeline.ed import PrepareParams, read_release, wordpiece_length_stats
from pipeline.io import write_json, write_table
from pipeline.models import wordpiece_tokenizer
from pipeline.params import load_params, section
from pipeline.progress import log
from pipeline.schemas import DIALOGUES

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(ed_dir: str = "data/raw/ed", out: str = "data/prepared/dialogues.parquet", metrics: str = "metrics/data.json",
         params: str = "params.yaml") -> None:
    cfg = section(load_params(params), "prepare", PrepareParams)
    rows, reports = read_release(ed_dir, ED_SPLITS, cfg.max_malformed_frac)
    write_table(out, pa.Table.from_pylist(rows), DIALOGUES)
    lengths = wordpiece_length_stats(rows, wordpiece_tokenizer())
    write_json(metrics, {split: {**reports[split], **lengths[split]} for split in ED_SPLITS})
    log("prepare: " + ", ".join(f"{s} {reports[s]['rows']} rows / {reports[s]['conversations']} conversations"
                                for s in ED_SPLITS))


if __name__ == "__main__":
    app()
