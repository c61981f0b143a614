"""Stage controls: the control-signal table (CM, IT, SF, emotion) of every ED row -> data/signals/controls.parquet."""
import typer

from pipeline.cli import guard
from pipeline.controls import build_controls
from pipeline.io import read_frame, write_frame
from pipeline.progress import log
from pipeline.schemas import CONTROLS, DIALOGUES, FRAMES, SEGMENTS, TAGS

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", segments: str = "data/prepared/segments.parquet",
         tags: str = "data/signals/tags.parquet", frames: str = "data/signals/frames.parquet",
         out: str = "data/signals/controls.parquet") -> None:
    table = build_controls(read_frame(dialogues, DIALOGUES, stage="prepare"), read_frame(segments, SEGMENTS, stage="segment"),
                           read_frame(tags, TAGS, stage="tag"), read_frame(frames, FRAMES, stage="tag_frames"))
    write_frame(out, table, CONTROLS)
    log(f"[controls] {len(table)} rows -> {out}")


if __name__ == "__main__":
    app()
