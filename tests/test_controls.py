"""The control table: joins, consistency checks, schema, and the flat control sequence (tiny hand-made tables)."""
import pandas as pd
import pytest

from pipeline.controls import build_controls, control_sequence
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_frame
from pipeline.labels import EMOTIONS
from pipeline.schemas import CONTROLS

PROBS = [1.0 / len(EMOTIONS)] * len(EMOTIONS)


def tables():
    """Two responses: "Oh no. Maybe ask?" (2 sentences) and "" (empty)."""
    dialogues = pd.DataFrame({
        "example_id": ["c1:1", "c2:1"], "split": ["train", "test"], "conv_id": ["c1", "c2"], "turn": [1, 1],
        "emotion": ["sad", "proud"], "situation": ["s1", "s2"], "context": [["I lost it."], ["I won!"]],
        "response": ["Oh no. Maybe ask?", ""],
    })
    segments = pd.DataFrame({  # listed in the other order: the join must follow dialogues
        "example_id": ["c2:1", "c1:1"],
        "words": [[], ["Oh", "no", ".", "Maybe", "ask", "?"]],
        "word_starts": [[], [0, 3, 5, 7, 13, 16]], "word_ends": [[], [2, 5, 6, 12, 16, 17]],
        "lemmas": [[], ["oh", "no", ".", "maybe", "ask", "?"]], "pos": [[], ["INTJ", "INTJ", "PUNCT", "ADV", "VERB", "PUNCT"]],
        "sent_starts": [[], [0, 7]], "sent_ends": [[], [6, 17]],
    })
    tags = pd.DataFrame({
        "example_id": ["c1:1", "c2:1"], "cm_er": [True, False], "cm_ip": [False, False], "cm_ex": [True, False],
        "p_er": [0.9, 0.1], "p_ip": [0.2, 0.1], "p_ex": [0.8, 0.1],
        "sent_starts": [[0, 7], []], "sent_ends": [[6, 17], []], "intents": [["sympathizing", "suggesting"], []],
        "emotion_probs": [PROBS, PROBS],
    })
    frames = pd.DataFrame({
        "example_id": ["c1:1", "c2:1"], "words": [["Oh", "no", ".", "Maybe", "ask", "?"], []],
        "sf": [["_", "NO", "_", "_", "Request", "?"], []], "sf_first": [["_", "NO", "_", "_", "Questioning", "?"], []],
        "subword_ids": [[2821, 2053, 1012, 2672, 3198, 1029], []], "subword_word": [[0, 1, 2, 3, 4, 5], []],
    })
    return dialogues, segments, tags, frames


def test_table_follows_dialogues_and_round_trips_its_schema(tmp_path):
    table = build_controls(*tables())
    write_frame(tmp_path / "controls.parquet", table, CONTROLS)
    back = read_frame(tmp_path / "controls.parquet", CONTROLS)
    assert list(back["example_id"]) == ["c1:1", "c2:1"]
    first, empty = back.iloc[0], back.iloc[1]
    assert list(first["word_sent"]) == [0, 0, 0, 1, 1, 1]
    assert list(first["sf"]) == ["_", "NO", "_", "_", "Request", "?"]
    assert list(first["intents"]) == ["sympathizing", "suggesting"]
    assert (first["cm_er"], first["cm_ip"], first["cm_ex"]) == (True, False, True)
    assert list(empty["words"]) == [] and list(empty["subword_ids"]) == [] and empty["split"] == "test"


def test_control_sequence_coarse_to_fine():
    row = build_controls(*tables()).iloc[0]
    assert control_sequence(row) == "EMOTIONAL_REACTION EXPLORATION SYMPATHIZING SUGGESTING _ NO _ _ REQUEST ?"
    assert control_sequence(row, signals=("cm", "it")) == "EMOTIONAL_REACTION EXPLORATION SYMPATHIZING SUGGESTING"
    assert control_sequence(row, signals=("sf",)) == "_ NO _ _ REQUEST ?"
    assert control_sequence(build_controls(*tables()).iloc[1]) == ""  # empty response, no mechanism
    with pytest.raises(PipelineError, match="unknown control signals"):
        control_sequence(row, signals=("em",))


def test_missing_rows_name_the_stage():
    dialogues, segments, tags, frames = tables()
    with pytest.raises(PipelineError, match=r"frames.parquet lacks 1 of 2 .*c2:1.*dvc repro tag_frames"):
        build_controls(dialogues, segments, tags, frames.iloc[:1])


def test_other_segmentation_is_refused():
    dialogues, segments, tags, frames = tables()
    frames.at[0, "words"] = ["Oh", "no.", "Maybe", "ask", "?"]
    with pytest.raises(PipelineError, match="other words than segments.parquet .first: c1:1"):
        build_controls(dialogues, segments, tags, frames)
    dialogues, segments, tags, frames = tables()
    tags.at[0, "sent_ends"] = [5, 17]
    with pytest.raises(PipelineError, match="other sentence spans"):
        build_controls(dialogues, segments, tags, frames)
    dialogues, segments, tags, frames = tables()
    tags.at[0, "intents"] = ["sympathizing"]
    with pytest.raises(PipelineError, match="one intent per sentence"):
        build_controls(dialogues, segments, tags, frames)
