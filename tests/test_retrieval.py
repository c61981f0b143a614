"""Retrieval (paper Eq. 8): hand-made pools whose rankings are known, exclusion, ties, k > pool, metrics, the stages."""
import json

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_frame
from pipeline.labels import EMOTIONS
from pipeline.retrieval import Index, agreement, candidate_frame, oracle_frame, search, top_k
from pipeline.schemas import CANDIDATES, CONTROLS


def onehot(emotion: str) -> list[float]:
    return [float(e == emotion) for e in EMOTIONS]


def controls_row(example_id: str, split: str = "train", emotion: str = "afraid", context=("hi",), **fields) -> dict:
    """One CONTROLS row; control fields default to a one-word, one-sentence response."""
    row = {
        "example_id": example_id, "split": split, "conv_id": example_id.split(":")[0], "emotion": emotion,
        "context": list(context), "response": f"response of {example_id}", "words": ["ok"], "word_sent": [0],
        "sf": ["_"], "sent_starts": [0], "sent_ends": [2], "intents": ["neutral"], "cm_er": False, "cm_ip": False,
        "cm_ex": False, "subword_ids": [7929], "subword_word": [0], "emotion_probs": onehot(emotion),
    }
    return {**row, **fields}


# Query: semantic [1, 0], emotion "afraid". Pool (semantic cosine, emotion cosine):
# a (1.0, 0), b (0.8, 0), c (0.6, 1), d (0.0, 1).  gamma = 0: a b c d.  gamma = 1: c 1.6, a 1.0 = d 1.0 (tie -> a), b 0.8.
POOL_SEM = np.array([[1, 0], [0.8, 0.6], [0.6, 0.8], [0, 1]], np.float32)
POOL_EMO = ["angry", "angry", "afraid", "afraid"]
QUERY_SEM, QUERY_EMO = np.array([[1, 0]], np.float32), np.array([onehot("afraid")], np.float32)


@pytest.fixture
def index() -> Index:
    pool = pd.DataFrame([controls_row(f"{c}:1", emotion=e) for c, e in zip("abcd", POOL_EMO)])
    return Index.build(pool, POOL_SEM)


def ranked(index: Index, hits) -> list[str]:
    return list(index.pool["conv_id"].iloc[hits.pool])


def test_ranking_by_semantics_alone_at_gamma_0(index):
    hits = search(index, QUERY_SEM, QUERY_EMO, ["q"], k=3, gamma=0.0)
    assert ranked(index, hits) == ["a", "b", "c"]
    np.testing.assert_allclose(hits.score, [1.0, 0.8, 0.6], rtol=1e-6)
    assert list(hits.rank) == [0, 1, 2] and list(hits.query) == [0, 0, 0]


def test_emotion_term_reorders_at_gamma_1_and_ties_go_to_the_lower_pool_row(index):
    hits = search(index, QUERY_SEM, QUERY_EMO, ["q"], k=4, gamma=1.0)
    assert ranked(index, hits) == ["c", "a", "d", "b"]
    np.testing.assert_allclose(hits.score, [1.6, 1.0, 1.0, 0.8], rtol=1e-6)


def test_candidates_from_the_query_conversation_are_never_returned(index):
    hits = search(index, QUERY_SEM, QUERY_EMO, ["c"], k=2, gamma=1.0)
    assert ranked(index, hits) == ["a", "d"]


def test_k_larger_than_the_pool_returns_every_allowed_row_once(index):
    hits = search(index, QUERY_SEM, QUERY_EMO, ["a"], k=10, gamma=0.0)
    assert ranked(index, hits) == ["b", "c", "d"] and list(hits.rank) == [0, 1, 2]


def test_chunks_do_not_change_results(index):
    sem = np.array([[1, 0], [0, 1], [1, 1]], np.float32)
    emo = np.array([onehot("afraid"), onehot("angry"), onehot("afraid")], np.float32)
    whole = search(index, sem, emo, ["x", "y", "z"], k=2, gamma=0.5, chunk=8)
    split = search(index, sem, emo, ["x", "y", "z"], k=2, gamma=0.5, chunk=1)
    for field in ("query", "pool", "rank", "score"):
        np.testing.assert_array_equal(getattr(whole, field), getattr(split, field))


def test_top_k_breaks_ties_at_the_boundary_by_column_and_skips_excluded():
    scores = np.array([[0.5, 0.9, 0.5, 0.5, 0.1],
                       [-np.inf, 0.2, -np.inf, -np.inf, -np.inf]], np.float32)
    row, col, rank = top_k(scores, 3)
    assert list(zip(row, col, rank)) == [(0, 1, 0), (0, 0, 1), (0, 2, 2), (1, 1, 0)]


def test_zero_emotion_distribution_is_an_input_error():
    pool = pd.DataFrame([controls_row("a:1", emotion_probs=[0.0] * len(EMOTIONS))])
    with pytest.raises(PipelineError, match="emotion_probs"):
        Index.build(pool, np.ones((1, 2), np.float32))


def test_agreement_on_hand_made_pairs():
    gold = pd.DataFrame([controls_row("q:1", emotion="sad", cm_er=True, intents=["questioning", "neutral"], sf=["Time"]),
                         controls_row("r:1", emotion="sad", cm_ex=True, intents=[], sf=["_"])])
    cand = pd.DataFrame([controls_row("a:1", emotion="sad", cm_er=True, intents=["questioning"], sf=["Time", "Time"]),
                         controls_row("b:1", emotion="joyful", intents=["neutral"], sf=["_"])])
    got = agreement(gold, cand)
    assert got == pytest.approx({"emotion_match": 0.5, "cm_er": 1.0, "cm_ip": 1.0, "cm_ex": 0.5,
                                 "intent_first": 1.0, "sf_f1": 2 / 3})  # the frameless pair has no F1: left out


def test_candidate_and_oracle_tables_share_the_declared_layout(index, tmp_path):
    queries = pd.DataFrame([controls_row("q:1", split="valid", sf=["Time"])])
    hits = search(index, QUERY_SEM, QUERY_EMO, queries["conv_id"], k=2, gamma=0.0)
    write_frame(tmp_path / "c.parquet", candidate_frame(queries, index, hits), CANDIDATES)
    write_frame(tmp_path / "o.parquet", oracle_frame(queries), CANDIDATES)
    cands, oracle = read_frame(tmp_path / "c.parquet", CANDIDATES), read_frame(tmp_path / "o.parquet", CANDIDATES)
    assert list(cands["cand_example_id"]) == ["a:1", "b:1"] and set(cands["example_id"]) == {"q:1"}
    assert oracle.loc[0, "cand_example_id"] == "q:1" and list(oracle.loc[0, "sf"]) == ["Time"]
    assert oracle.loc[0, "rank"] == 0 and np.isnan(oracle.loc[0, "score"])


def test_index_round_trips_and_a_missing_index_names_its_stage(index, tmp_path):
    index.save(tmp_path / "index")
    loaded = Index.load(tmp_path / "index")
    np.testing.assert_array_equal(loaded.semantic, index.semantic)
    assert list(loaded.pool["example_id"]) == list(index.pool["example_id"])
    with pytest.raises(PipelineError, match="dvc repro build_index"):
        Index.load(tmp_path / "nowhere")


def write_stage_inputs(tmp_path, gamma: float = 0.2, k: int = 2) -> None:
    """A controls table (4 train, 2 valid, 1 test rows), an embedding store holding its contexts, and params.yaml."""
    from pipeline.embeddings import EmbeddingStore, context_text
    from pipeline.models import ENCODER_DIM

    rows = [controls_row(f"t{i}:1", context=(f"train context {i}",), emotion=EMOTIONS[i % 2]) for i in range(4)]
    rows += [controls_row(f"v{i}:1", split="valid", context=(f"valid context {i}", "more"), emotion=EMOTIONS[i])
             for i in range(2)]
    rows += [controls_row("s0:1", split="test", context=("test context",))]
    write_frame(tmp_path / "controls.parquet", pd.DataFrame(rows), CONTROLS)
    texts = [context_text(r["context"]) for r in rows]
    vectors = np.random.default_rng(0).normal(size=(len(texts), ENCODER_DIM)).astype(np.float32)
    EmbeddingStore.write(tmp_path / "emb", texts, vectors / np.linalg.norm(vectors, axis=1, keepdims=True))
    (tmp_path / "params.yaml").write_text(f"seed: 1\ngamma: {gamma}\nretrieve:\n  k: {k}\n  chunk: 2\n")


def test_stages_build_the_index_then_retrieve_for_valid_and_test(tmp_path):
    from stages import build_index, retrieve

    write_stage_inputs(tmp_path)
    runner, t = CliRunner(), str(tmp_path)
    result = runner.invoke(build_index.app, ["--controls", f"{t}/controls.parquet", "--embeddings", f"{t}/emb",
                                             "--out", f"{t}/index"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(retrieve.app, [
        "--index", f"{t}/index", "--controls", f"{t}/controls.parquet", "--embeddings", f"{t}/emb",
        "--candidates", f"{t}/cands.parquet", "--oracle", f"{t}/oracle.parquet", "--metrics", f"{t}/m.json",
        "--timings", f"{t}/timings.json", "--params", f"{t}/params.yaml"])
    assert result.exit_code == 0, result.output
    cands = read_frame(tmp_path / "cands.parquet", CANDIDATES)
    assert sorted(cands["example_id"].unique()) == ["s0:1", "v0:1", "v1:1"] and list(cands["rank"]) == [0, 1] * 3
    assert cands["cand_example_id"].str.startswith("t").all()
    oracle = read_frame(tmp_path / "oracle.parquet", CANDIDATES)
    assert list(oracle["cand_example_id"]) == list(oracle["example_id"]) == ["v0:1", "v1:1", "s0:1"]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["queries"] == 2 and metrics["pool"] == 4 and "search" not in metrics
    assert json.loads((tmp_path / "timings.json").read_text())["queries"] == 3
    assert set(metrics["top1"]) == {"emotion_enhanced", "semantic_only", "random"}


def test_retrieve_without_an_index_says_which_stage_builds_it(tmp_path):
    from stages import retrieve

    write_stage_inputs(tmp_path)
    result = CliRunner().invoke(retrieve.app, ["--index", f"{tmp_path}/none", "--params", f"{tmp_path}/params.yaml"])
    assert result.exit_code == 1 and "dvc repro build_index" in result.output
