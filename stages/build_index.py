"""Stage build_index: the retrieval pool (train-split controls + context vectors) -> data/index/.

Reads no params: `dvc exp run -S gamma=...` reruns only `retrieve` and what follows it.
"""
import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, context_text
from pipeline.io import read_frame
from pipeline.retrieval import Index
from pipeline.schemas import CONTROLS

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(controls: str = "data/signals/controls.parquet", embeddings: str = "data/embeddings",
         out: str = "data/index") -> None:
    df = read_frame(controls, CONTROLS, stage="controls")
    pool = df[df["split"] == "train"]
    semantic = EmbeddingStore(embeddings).lookup([context_text(list(c)) for c in pool["context"]])  # [N, 384]
    Index.build(pool, semantic).save(out)


if __name__ == "__main__":
    app()
