"""The fine-tuned tagger variant on a tiny random-initialised BERT (no MiniLM load): inputs, batching, the training
loop, early stopping, save/load, the interface it shares with the frozen variant, and the settings' checks."""
import dataclasses

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from transformers import BertConfig, BertModel
from typer.testing import CliRunner

from pipeline.embeddings import EmbeddingStore
from pipeline.errors import PipelineError
from pipeline.finetune import epoch_indices, length_batches, lr_factor, tokenize, train_finetuned
from pipeline.io import read_json, write_frame
from pipeline.labels import EMOTIONS, INTENTS
from pipeline.models import ENCODER_NAME, wordpiece_tokenizer
from pipeline.params import section
from pipeline.schemas import DIALOGUES
from pipeline.tagging import Taggers, load_tagger
from tests.test_taggers import CFG, bow_embed, cm_splits, text_splits

ENCODER = {"name": ENCODER_NAME, "max_seq_length": 128}
TUNE = dataclasses.replace(CFG, finetune=True, lr=3e-3, epochs=6, epoch_size=None, batch_size=8, warmup=0.1,
                           patience=6, max_context_tokens=8, max_text_tokens=8, bf16=False)


def tiny_bert(seed: int = 0) -> BertModel:
    """2 layers of width 32 over MiniLM's WordPiece vocabulary: trains in about a second."""
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=64)
    return BertModel(config, add_pooling_layer=False)


@pytest.fixture(scope="module")
def intent_tagger():
    """The intent tagger fine-tuned on "<intent> <filler>" sentences: the label is a word of the text."""
    return train_finetuned("intent", text_splits(INTENTS), TUNE, ENCODER, seed=0, bert=tiny_bert())


def test_pair_inputs_are_cross_encoded_with_the_newest_context_and_the_first_text_pieces():
    tok = wordpiece_tokenizer()
    ids, types = tokenize(tok, ["why did you go there"], ["one two three four five"], max_text=3, max_context=2)
    assert tok.convert_ids_to_tokens(ids[0]) == ["[CLS]", "four", "five", "[SEP]", "why", "did", "you", "[SEP]"]
    assert types[0] == [0, 0, 0, 0, 1, 1, 1, 1]
    ids, types = tokenize(tok, ["why did you go there"], None, max_text=3, max_context=2)
    assert tok.convert_ids_to_tokens(ids[0]) == ["[CLS]", "why", "did", "you", "[SEP]"] and set(types[0]) == {0}


def test_the_pair_tagger_reads_context_and_response_together():
    tagger, _ = train_finetuned("cm", cm_splits(), dataclasses.replace(TUNE, epochs=1), ENCODER, seed=0,
                                bert=tiny_bert())
    a = tagger.predict_proba(["sorry friend"], ["the day"])
    b = tagger.predict_proba(["sorry friend"], ["my dog died yesterday"])
    assert set(a) == {"cm_er", "cm_ip", "cm_ex"} and a["cm_er"].shape == (1, 2)
    assert not np.allclose(a["cm_er"], b["cm_er"])  # one sequence: the same response reads differently in context
    with pytest.raises(PipelineError, match="reads \\(context, text\\) pairs"):
        tagger.predict_proba(["sorry friend"])


def test_finetuning_learns_a_separable_toy_task(intent_tagger):
    tagger, metrics = intent_tagger
    assert metrics["heads"]["intent"]["test"]["accuracy"] == 100.0
    assert metrics["epochs"][0]["train_loss"] > metrics["epochs"][-1]["train_loss"]
    assert list(tagger.predict(["wishing you well", "questioning the day"])["intent"]) == ["wishing", "questioning"]


def test_save_and_load_give_identical_probabilities(intent_tagger, tmp_path):
    tagger, _ = intent_tagger
    tagger.save(tmp_path / "intent")
    loaded = load_tagger(tmp_path / "intent")
    texts = ["wishing you well", "I am sorry to hear", "", "why " * 200]  # an empty and an over-long text too
    assert loaded.variant == "finetuned" and loaded.hparams == tagger.hparams
    np.testing.assert_array_equal(loaded.predict_proba(texts)["intent"], tagger.predict_proba(texts)["intent"])


def test_early_stopping_keeps_the_best_valid_epoch():
    # Valid labels are the train labels swapped: the better the model fits train, the worse valid gets.
    splits = text_splits(INTENTS[:2], n=8)
    swap = dict(zip(INTENTS[:2], INTENTS[1::-1]))
    splits["valid"] = splits["valid"].assign(intent=splits["valid"]["intent"].map(swap))
    cfg = dataclasses.replace(TUNE, epochs=5, patience=5)
    tagger, metrics = train_finetuned("intent", splits, cfg, ENCODER, seed=0, bert=tiny_bert())
    f1 = [e["valid_macro_f1"] for e in metrics["epochs"]]
    assert len(f1) == 5 and metrics["best_epoch"] == int(np.argmax(f1)) + 1 < 5
    assert metrics["heads"]["intent"]["valid"]["macro_f1"] == pytest.approx(max(f1), abs=0.01)  # its weights came back
    # patience 1: a learning rate too small to change anything never beats epoch 1, so training stops after epoch 2
    _, metrics = train_finetuned("intent", splits, dataclasses.replace(cfg, lr=1e-12, patience=1), ENCODER, seed=0,
                                 bert=tiny_bert())
    assert (metrics["best_epoch"], len(metrics["epochs"])) == (1, 2)


@pytest.mark.parametrize("bf16", [False, True])
def test_training_is_deterministic_for_a_seed(bf16):
    cfg = dataclasses.replace(TUNE, epochs=2, bf16=bf16)
    runs = [train_finetuned("intent", text_splits(INTENTS[:3]), cfg, ENCODER, seed=3, bert=tiny_bert())[0]
            for _ in range(2)]
    for a, b in zip(*(r.model.state_dict().values() for r in runs)):
        assert torch.equal(a, b)


def test_epochs_batches_and_schedule():
    rng = np.random.default_rng(0)
    epochs = epoch_indices(10, 4, 5, rng)  # 20 draws: every example twice, once before any repeat
    assert [len(e) for e in epochs] == [4] * 5
    stream = np.concatenate(epochs)
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:]) == list(range(10))
    lengths = rng.integers(1, 100, size=1000)
    batches = length_batches(rng.permutation(1000), lengths, 16, rng)
    assert len(batches) == 63 and sorted(np.concatenate(batches)) == list(range(1000))
    spread = np.mean([np.ptp(lengths[b]) for b in batches])  # within-batch length range
    assert spread < 10  # sorted buckets of 800: neighbours differ by ~0.1 on average
    assert [lr_factor(s, 10, 2) for s in (0, 1, 2, 6, 9, 10)] == [0.5, 1.0, 1.0, 0.5, 0.125, 0.0]


@pytest.mark.parametrize("key,bad,match", [
    ("lr", 0.0, "lr=0.0 must be positive"), ("epochs", 0, "epochs=0 must be positive"),
    ("warmup", 1.0, "warmup=1.0 must be a fraction"), ("epoch_size", 0, "epoch_size=0 must be positive or null"),
    ("max_text_tokens", 510, "exceeds MiniLM's 512 positions"), ("C", [], "C=\\[\\] must be a non-empty list"),
    ("bf16", "yes", "`train_taggers.bf16` is 'yes', expected bool"),
])
def test_the_settings_reject_bad_values_in_one_line(key, bad, match):
    values = {**dataclasses.asdict(TUNE), key: bad}
    with pytest.raises(PipelineError, match=match) as err:
        section({"train_taggers": values}, "train_taggers", type(TUNE))
    assert "\n" not in str(err.value)


def run_emotion_stage(tmp_path, monkeypatch, encoder=tiny_bert) -> dict[str, pd.DataFrame]:
    """Stage train_taggers@emotion on tiny ED data in tmp_path (dialogues.parquet, emb/, params.yaml), fine-tuning
    `encoder()` in place of MiniLM -> tmp_path/emotion/; returns the data's splits."""
    import pipeline.finetune
    from stages.train_taggers import app

    monkeypatch.setattr(pipeline.finetune, "pretrained_encoder", encoder)
    splits = text_splits(EMOTIONS, n=2)
    rows = [{"example_id": f"c{s}{i}:1", "split": s, "conv_id": f"c{s}{i}", "turn": 1, "emotion": r["emotion"],
             "situation": "", "context": [r["text"]], "response": "ok"}
            for s, df in splits.items() for i, r in df.iterrows()]
    write_frame(tmp_path / "dialogues.parquet", pd.DataFrame(rows), DIALOGUES)
    texts = list(dict.fromkeys(r["context"][0] for r in rows))
    EmbeddingStore.write(tmp_path / "emb", texts, bow_embed(texts))
    params = {"seed": 0, "encode": {"batch_size": 8, "max_seq_length": 128},
              "train_taggers": {**dataclasses.asdict(TUNE), "epochs": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    args = ["--name", "emotion", "--dialogues", tmp_path / "dialogues.parquet", "--embeddings", tmp_path / "emb",
            "--out", tmp_path / "emotion", "--timings", tmp_path / "timings.json", "--params", tmp_path / "params.yaml"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return splits


def test_train_taggers_stage_saves_the_finetuned_variant_and_scores_both(tmp_path, monkeypatch):
    splits = run_emotion_stage(tmp_path, monkeypatch)
    metrics = read_json(tmp_path / "emotion" / "metrics.json")
    assert metrics["used"] == "finetuned" and set(metrics) >= {"frozen", "finetuned"}
    for variant in ("frozen", "finetuned"):
        assert set(metrics[variant]["heads"]["emotion"]["test"]["per_class_f1"]) == set(EMOTIONS)
    assert load_tagger(tmp_path / "emotion").variant == "finetuned"
    assert read_json(tmp_path / "timings.json")["finetuned"]["examples_seen"] == len(splits["train"])


def test_taggers_tag_works_with_finetuned_and_frozen_models_together(tmp_path, intent_tagger):
    from tests.test_taggers import train_frozen_models

    frozen = train_frozen_models(tmp_path / "models")  # cm and emotion stay frozen, intent is fine-tuned
    intent_tagger[0].save(frozen / "intent")
    taggers = Taggers.load(frozen, embed=bow_embed)
    assert {n: t.variant for n, t in taggers.taggers.items()} == {"cm": "frozen", "intent": "finetuned",
                                                                   "emotion": "frozen"}
    from pipeline.segment import segment_texts

    responses = ["Wishing today. Questioning the day?"]
    tags = taggers.tag([["Afraid of the test."]], responses, segment_texts(responses))
    assert tags["intents"][0] == ["wishing", "questioning"]
    assert int(np.argmax(tags["emotion_probs"][0])) == EMOTIONS.index("afraid")
