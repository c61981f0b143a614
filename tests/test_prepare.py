"""The ED release parser, the listener-turn rows, and stage prepare on the synthetic mirror."""
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from pipeline.ed import length_summary, listener_turns, parse_lines, read_release, read_split
from pipeline.errors import PipelineError
from tests.synthetic import ED_CONVERSATIONS, expected_dialogues, write_mirror

ROOT = Path(__file__).resolve().parents[1]
HEADER = "conv_id,utterance_idx,context,prompt,speaker_idx,utterance,selfeval,tags"

# Made-up release lines with every quirk of the real files, and some breakage.
MALFORMED_RELEASE = [
    HEADER,
    # conversation a: `_comma_`, stray quotes, extra fields (free-text tags), CRLF, an empty listener turn
    'a,1,sad,Lost my "best" friend_comma_ sadly.,1,She moved away_comma_ "far" away.,5|5,',
    'a,2,sad,Lost my "best" friend_comma_ sadly.,2,Oh no! "Where" to?,,tags,with,commas',
    "a,3,sad,Lost my \"best\" friend_comma_ sadly.,1,  Canada. ,,\r",
    "a,4,sad,Lost my \"best\" friend_comma_ sadly.,2,   ,,",
    "a,5,sad,Lost my \"best\" friend_comma_ sadly.,1,I miss her.,,",
    "a,6,sad,Lost my \"best\" friend_comma_ sadly.,2,Call her tonight?,,",
    # conversation b: non-ASCII, a repeated utterance_idx, a line with too few fields, a bad index, an unknown emotion
    "b,1,joyful,Café day,7,Le café était très bon ☕,,",
    "b,1,joyful,Café day,7,a repeated index,,",
    "b,2,joyful,Café day",
    "b,x,joyful,Café day,8,bad index,,",
    "b,2,happyish,Café day,8,unknown emotion,,",
    "b,2,joyful,Café day,8,Glad you enjoyed it’s taste!,,",
    "",
    # conversation c: a speaker only, so no listener turn; d: its only speaker turn is empty, so no context
    "c,1,lonely,Alone,9,Nobody called.,,",
    "d,1,afraid,Dark,3,,,",
    "d,2,afraid,Dark,4,What happened?,,",
]


def encode(lines: list[str]) -> list[bytes]:
    return [(line + "\n").encode("utf-8") for line in lines]


def test_parser_on_malformed_lines_gives_exactly_these_rows():
    utterances, problems = parse_lines(encode(MALFORMED_RELEASE) + [b"b,3,joyful,x,7,\xff\xfe,,\n"])
    rows, repeated, dropped = listener_turns(utterances, "train")
    situation = 'Lost my "best" friend, sadly.'
    assert rows == [
        {"example_id": "a:1", "split": "train", "conv_id": "a", "turn": 1, "emotion": "sad", "situation": situation,
         "context": ['She moved away, "far" away.'], "response": 'Oh no! "Where" to?'},
        {"example_id": "a:5", "split": "train", "conv_id": "a", "turn": 5, "emotion": "sad", "situation": situation,
         "context": ['She moved away, "far" away.', 'Oh no! "Where" to?', "Canada.", "I miss her."],
         "response": "Call her tonight?"},
        {"example_id": "b:1", "split": "train", "conv_id": "b", "turn": 1, "emotion": "joyful", "situation": "Café day",
         "context": ["Le café était très bon ☕"], "response": "Glad you enjoyed it’s taste!"},
    ]
    assert dict(problems) == {"too_few_fields": 2, "bad_utterance_idx": 1, "unknown_emotion": 1, "not_utf8": 1}
    assert dict(repeated) == {"duplicate_utterance": 1}
    assert dict(dropped) == {"empty_response": 1, "empty_context": 1}


def test_listener_role_follows_utterance_idx_not_position():
    # utterance 2 is lost to a malformed line: utterance 3 is still the speaker's, 4 the listener's.
    utterances, _ = parse_lines(encode(["a,1,sad,s,1,one,,", "a,2,sad", "a,3,sad,s,1,three,,", "a,4,sad,s,2,four,,"]))
    rows, _, _ = listener_turns(utterances, "valid")
    assert [(r["turn"], r["context"], r["response"]) for r in rows] == [(3, ["one", "three"], "four")]


def write_split(folder: Path, split: str, lines: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{split}.csv").write_bytes(b"".join(encode(lines)))


def test_too_many_malformed_lines_is_an_error(tmp_path):
    write_split(tmp_path, "train", MALFORMED_RELEASE)
    rows, report = read_split(tmp_path / "train.csv", "train", max_malformed_frac=0.5)
    assert report["rows"] == 3 and report["conversations"] == 4 and report["malformed"]["duplicate_utterance"] == 1
    with pytest.raises(PipelineError, match=r"5 of 17 lines are malformed"):
        read_split(tmp_path / "train.csv", "train", max_malformed_frac=0.1)


def test_a_conversation_in_two_splits_is_an_error(tmp_path):
    write_split(tmp_path, "train", [HEADER, "a,1,sad,s,1,hi,,", "a,2,sad,s,2,hello,,"])
    write_split(tmp_path, "valid", [HEADER, "a,1,sad,s,1,hi,,", "a,2,sad,s,2,hello,,"])
    with pytest.raises(PipelineError, match="a is in both train and valid"):
        read_release(tmp_path, ("train", "valid"), 0.0)


def test_missing_split_names_the_stage_to_run(tmp_path):
    with pytest.raises(PipelineError, match="dvc repro download"):
        read_split(tmp_path / "test.csv", "test", 0.0)


def test_length_summary():
    assert length_summary([1, 2, 3, 4, 100]) == {"mean": 22.0, "median": 3.0, "p95": 80.8, "max": 100}


def test_stage_prepare_on_the_synthetic_mirror(tmp_path):
    write_mirror(tmp_path / "mirror")
    ed_dir = tmp_path / "raw" / "ed"
    ed_dir.mkdir(parents=True)
    with tarfile.open(tmp_path / "mirror" / "empatheticdialogues" / "empatheticdialogues.tar.gz") as tar:
        for split in ED_CONVERSATIONS:
            ed_dir.joinpath(f"{split}.csv").write_bytes(tar.extractfile(f"empatheticdialogues/{split}.csv").read())
    out, metrics = tmp_path / "dialogues.parquet", tmp_path / "data.json"
    subprocess.run([sys.executable, "-m", "stages.prepare", "--ed-dir", str(ed_dir), "--out", str(out),
                    "--metrics", str(metrics), "--params", str(ROOT / "params.yaml")], cwd=ROOT, check=True)
    assert pq.read_table(out).to_pylist() == expected_dialogues()
    report = json.loads(metrics.read_text())
    assert {s: (r["rows"], r["conversations"]) for s, r in report.items()} == {
        "train": (41, 33), "valid": (5, 3), "test": (6, 3)}
    # The longest valid response, "Maybe you could take her out for lunch this weekend to make it up to her.", is 16
    # whole-word WordPieces and a period.
    assert report["valid"]["response_tokens"]["max"] == 17
