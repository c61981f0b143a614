"""The embeddings artifact: context text, distinct ED texts, batched MiniLM encoding, and the store round trip."""
import numpy as np
import pandas as pd
import pytest

from pipeline.embeddings import EmbeddingStore, context_text, ed_texts, encode_texts, sentence_texts
from pipeline.errors import PipelineError


def test_context_text_joins_utterances_oldest_first():
    assert context_text(["I lost my job. ", " That's awful!"]) == "I lost my job. That's awful!"
    assert context_text([]) == ""


def test_sentence_texts_cut_the_response_at_its_spans():
    assert sentence_texts("Oh no! What happened?", [0, 7], [6, 21]) == ["Oh no!", "What happened?"]


def dialogues_and_segments():
    dialogues = pd.DataFrame({
        "example_id": ["c1:1", "c1:3", "c2:1"],
        "context": [["Hi there."], ["Hi there.", "Hello!", "I won."], ["Hi there."]],
        "response": ["Hello! How are you?", "Wow. Great!", "Hello! How are you?"],
    })
    segments = pd.DataFrame({
        "example_id": ["c2:1", "c1:1", "c1:3"],  # any order: joined on example_id
        "sent_starts": [[0, 7], [0, 7], [0, 5]],
        "sent_ends": [[6, 19], [6, 19], [4, 11]],
    })
    return dialogues, segments


def test_ed_texts_lists_each_context_response_and_sentence_once():
    texts = ed_texts(*dialogues_and_segments())
    assert texts == ["Hi there.", "Hi there. Hello! I won.", "Hello! How are you?", "Wow. Great!",
                     "Hello!", "How are you?", "Wow.", "Great!"]


def test_ed_texts_rejects_segments_that_miss_a_row():
    dialogues, segments = dialogues_and_segments()
    with pytest.raises(PipelineError, match="dvc repro segment"):
        ed_texts(dialogues, segments.iloc[:2])


def test_encode_texts_keeps_row_order_and_survives_odd_inputs():
    texts = ["I am so sorry to hear that.", "", "Congrats!!! 🎉😀", "これは日本語の文です。", "word " * 200, "ok"]
    vectors = encode_texts(texts, batch_size=2)  # longest-first batching must not reorder rows
    assert vectors.shape == (6, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    alone = np.concatenate([encode_texts([t]) for t in texts])
    np.testing.assert_allclose(vectors, alone, atol=1e-4)
    assert encode_texts([]).shape == (0, 384)


def test_store_round_trips_and_names_the_stage_when_something_is_missing(tmp_path):
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 384)).astype(np.float32)
    EmbeddingStore.write(tmp_path / "emb", ["a", "b", "c"], vectors)
    store = EmbeddingStore(tmp_path / "emb")
    np.testing.assert_array_equal(store.lookup(["c", "a", "c"]), vectors[[2, 0, 2]])
    assert store.lookup([]).shape == (0, 384)
    with pytest.raises(PipelineError, match="dvc repro encode"):
        store.lookup(["a", "not there"])
    with pytest.raises(PipelineError, match="dvc repro encode"):
        EmbeddingStore(tmp_path / "nowhere")
    with pytest.raises(PipelineError, match="distinct"):
        EmbeddingStore.write(tmp_path / "dup", ["a", "a"], vectors[:2])
