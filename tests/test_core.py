"""The shared library pieces: atomic writers, declared-schema tables, one-line errors, segmentation and alignment."""

import pyarrow as pa
import pytest
import typer
from typer.testing import CliRunner

from pipeline.cli import guard
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_frame, read_json, write_json, write_table
from pipeline.segment import segment_texts, word_sentence_index, wordpiece_align

SCHEMA = pa.schema([("a", pa.string()), ("b", pa.list_(pa.int32()))])


def test_atomic_path_leaves_no_file_when_the_block_fails(tmp_path):
    target = tmp_path / "out.json"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_path_keeps_the_old_file_until_the_new_one_is_complete(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("{broken")
            raise RuntimeError
    assert read_json(target) == {"v": 1}


def test_write_table_casts_to_the_declared_schema_and_orders_columns(tmp_path):
    table = pa.table({"b": [[1, 2], []], "a": ["x", "y"]})  # b inferred as int64, columns out of order
    write_table(tmp_path / "t.parquet", table, SCHEMA)
    df = read_frame(tmp_path / "t.parquet", SCHEMA)
    assert list(df.columns) == ["a", "b"] and list(df["b"][0]) == [1, 2]


def test_write_table_rejects_a_missing_column_with_a_pipeline_error(tmp_path):
    with pytest.raises(PipelineError, match="declared schema"):
        write_table(tmp_path / "t.parquet", pa.table({"a": ["x"]}), SCHEMA)
    assert not (tmp_path / "t.parquet").exists()


def test_missing_artifact_names_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match=r"dvc repro prepare"):
        read_frame(tmp_path / "nope.parquet", stage="prepare")


def test_guard_prints_one_line_and_exits_1():
    app = typer.Typer()

    @app.command()
    @guard
    def main() -> None:
        raise PipelineError("bad input: fix it")

    result = CliRunner().invoke(app, [])
    assert result.exit_code == 1
    assert result.output.strip() == "error: bad input: fix it"


def test_segment_words_spans_and_sentences():
    text = "I don't know. Really? Yes"
    (row,) = segment_texts([text])
    assert row["words"] == ["I", "do", "n't", "know", ".", "Really", "?", "Yes"]
    assert [text[s:e] for s, e in zip(row["word_starts"], row["word_ends"])] == row["words"]
    assert [text[s:e] for s, e in zip(row["sent_starts"], row["sent_ends"])] == ["I don't know.", "Really?", "Yes"]
    assert row["lemmas"][2] == "not" and row["pos"][0] == "PRON"


def test_segment_empty_and_emoji_texts():
    empty, blank, emoji = segment_texts(["", "   ", "😀 ok"])
    assert empty["words"] == [] and empty["sent_starts"] == [] and blank["words"] == []
    assert emoji["words"] == ["😀", "ok"]


def test_word_sentence_index():
    assert word_sentence_index([0, 2, 5, 9, 12], [0, 5, 12]) == [0, 0, 1, 1, 2]
    assert word_sentence_index([], []) == []


def test_wordpiece_align_gives_every_subword_its_word():
    ids, word_of = wordpiece_align(["I", "supercalifragilistic", "!"])
    assert len(ids) == len(word_of) and word_of[0] == 0 and word_of[-1] == 2
    assert set(word_of) == {0, 1, 2} and word_of.count(1) > 1 and word_of == sorted(word_of)


def test_wordpiece_align_keeps_a_word_that_wordpiece_drops():
    ids, word_of = wordpiece_align(["a", "\u200b", "b"])  # a zero-width space yields no WordPiece
    assert word_of == [0, 1, 2] and ids[1] == 100  # [UNK]
