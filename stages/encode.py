"""Stage encode: MiniLM vectors of every distinct ED context, response and response sentence -> data/embeddings/."""
import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, EncodeParams, ed_texts, encode_texts
from pipeline.io import read_frame
from pipeline.params import load_params, section
from pipeline.schemas import DIALOGUES, SEGMENTS

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", segments: str = "data/prepared/segments.parquet",
         out: str = "data/embeddings", params: str = "params.yaml") -> None:
    cfg = section(load_params(params), "encode", EncodeParams)
    texts = ed_texts(read_frame(dialogues, DIALOGUES, stage="prepare"), read_frame(segments, SEGMENTS, stage="segment"))
    vectors = encode_texts(texts, batch_size=cfg.batch_size, max_seq_length=cfg.max_seq_length)
    EmbeddingStore.write(out, texts, vectors)


if __name__ == "__main__":
    app()
