"""Stage retrieve: top-k training candidates for every valid/test context (paper Eq. 8), and the oracle source.

Outputs data/retrieval/candidates.parquet and data/retrieval/oracle.parquet (both CANDIDATES: the sampler reads either),
metrics/retrieval.json (valid split: top-1 agreement with gold signals at `gamma` and at 0) and the search speed in
metrics/timings/retrieve.json (kept out of the metrics that `dvc metrics diff` compares).
"""
import time

import typer

from pipeline.cli import guard
from pipeline.embeddings import EmbeddingStore, context_text
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_frame, write_json
from pipeline.params import load_params, section, value
from pipeline.retrieval import Index, RetrieveParams, candidate_frame, emotion_matrix, evaluate, oracle_frame, search
from pipeline.schemas import CANDIDATES, CONTROLS
from pipeline.seeding import seed_everything

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(index: str = "data/index", controls: str = "data/signals/controls.parquet",
         embeddings: str = "data/embeddings", candidates: str = "data/retrieval/candidates.parquet",
         oracle: str = "data/retrieval/oracle.parquet", metrics: str = "metrics/retrieval.json",
         timings: str = "metrics/timings/retrieve.json", params: str = "params.yaml") -> None:
    p = load_params(params)
    cfg, gamma = section(p, "retrieve", RetrieveParams), float(value(p, "gamma", float))
    rng = seed_everything(value(p, "seed", int))
    pool = Index.load(index)
    df = read_frame(controls, CONTROLS, stage="controls")
    queries = df[df["split"].isin(["valid", "test"])].reset_index(drop=True)
    if not (queries["split"] == "valid").any():
        raise PipelineError(f"{controls} has no valid rows to query with: rerun `dvc repro controls`")
    semantic = EmbeddingStore(embeddings).lookup([context_text(list(c)) for c in queries["context"]])  # [Q, 384]
    emotion = emotion_matrix(queries["emotion_probs"])  # [Q, 32]

    start = time.perf_counter()
    hits = search(pool, semantic, emotion, queries["conv_id"], k=cfg.k, gamma=gamma, chunk=cfg.chunk)
    seconds = time.perf_counter() - start
    write_frame(candidates, candidate_frame(queries, pool, hits), CANDIDATES)
    write_frame(oracle, oracle_frame(queries), CANDIDATES)

    valid = (queries["split"] == "valid").to_numpy()
    write_json(metrics, {
        "split": "valid", "queries": int(valid.sum()), "pool": len(pool.pool), "gamma": gamma, "k": cfg.k,
        "top1": evaluate(pool, queries[valid], semantic[valid], emotion[valid], gamma, rng),
    })
    write_json(timings, {"queries": len(queries), "seconds": round(seconds, 3),
                         "queries_per_s": round(len(queries) / max(seconds, 1e-9), 1)})


if __name__ == "__main__":
    app()
