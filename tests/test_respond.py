"""The respond command through typer's CliRunner, on a tiny index, emotion tagger and random diffusion model."""
import dataclasses
import io
import json
import random
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from pipeline.diffusion.config import ModelConfig, SampleConfig
from pipeline.diffusion.inputs import encode_example
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.checkpoint import save_model
from pipeline.diffusion.vocab import Vocab
from pipeline.labels import EMOTIONS
from pipeline.models import ENCODER_DIM, ENCODER_NAME
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_frame
from pipeline.params import section
from pipeline.respond import Options, Overrides, Responder, decode_lines, length_donors, parse_dialogue, read_contexts
from pipeline.retrieval import Index
from pipeline.schemas import CANDIDATES, CONTROL_NAMES, CONTROLS, SAMPLES
from pipeline.taggers import FrozenTagger
from stages import respond, sample
from tests.test_retrieval import controls_row
from tests.test_trainer import SENTENCES, control_row

K = 2


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """index/, taggers/emotion/, diffusion/ and params.yaml in one folder; returns the CLI options that point at them."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("respond")
    rng = np.random.default_rng(0)
    pool = pd.DataFrame([controls_row(f"t{i}:1", emotion=EMOTIONS[i], sf=["Desiring" if i % 2 else "_"])
                         for i in range(4)])
    Index.build(pool, rng.normal(size=(4, ENCODER_DIM))).save(root / "index")

    x = rng.normal(size=(2 * len(EMOTIONS), ENCODER_DIM))
    head = LogisticRegression(max_iter=50).fit(x, list(EMOTIONS) * 2)
    FrozenTagger("emotion", {"emotion": head}, {"name": ENCODER_NAME, "max_seq_length": 128}, {}).save(
        root / "taggers" / "emotion")

    cfg = ModelConfig(emb_dim=8, width=16, layers=1, heads=2, ffn=32, dropout=0.0, max_len=48, max_context=16, T=10)
    vocab = Vocab.build(pool.to_dict("records"), cfg)
    save_model(root / "diffusion", DiffusEmpModel(cfg, vocab).state_dict(), cfg, vocab)

    (root / "params.yaml").write_text(
        f"seed: 0\ngamma: 0.2\nretrieve:\n  k: {K}\n  chunk: 8\nsample:\n  split: test\n  subset: null\n  steps: 2\n"
        "  clamp: false\n  temperature: 0.0\n  solver: ancestral\n  edit_strength: 0.5\n  num_samples: 1\n  rerank: none\n  candidates: null\n  edit_candidates: null\n  batch_size: 8\n  bf16: false\n  guidance: 1.0\n  guidance_start: 0.0\n"
        "steered_sample:\n  temperature: null\ntag:\n  cm_threshold: 0.5\n")
    return ["--index", str(root / "index"), "--taggers", str(root / "taggers"), "--model", str(root / "diffusion"),
            "--params", str(root / "params.yaml")]


def run(args, stdin: str | None = None):
    return CliRunner().invoke(respond.app, args, input=stdin)


def test_table_shows_every_candidate_its_controls_and_a_response(artifacts):
    result = run(["I caught my boyfriend texting his ex.", *artifacts])
    assert result.exit_code == 0, result.output
    assert "#1" in result.stdout and "#2" in result.stdout and "#3" not in result.stdout
    assert result.stdout.count("controls: ") == K and result.stdout.count("response: ") == K


def test_json_lines_from_stdin_with_manual_cm_and_intent(artifacts):
    stdin = "I lost my job. || Oh no, what happened? || They closed the store.\n\nMy dog is sick.\n"
    result = run(["--json", "--cm", "exploration", "--intent", "questioning", *artifacts], stdin)
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == 2 * K
    assert records[0]["context"] == ["I lost my job.", "Oh no, what happened?", "They closed the store."]
    assert all(r["cm"] == {"er": False, "ip": False, "ex": True} for r in records)
    assert all(r["intents"] == ["questioning"] for r in records)
    assert all(r["control_sequence"] == "EXPLORATION QUESTIONING" for r in records)
    assert all(r["given"] == ["cm", "it"] and r["sf"] is None for r in records)  # the frames are freed
    assert [r["rank"] for r in records] == [0, 1, 0, 1] and isinstance(records[0]["response"], str)


def test_no_retrieval_answers_from_the_hand_set_levels_alone(artifacts):
    result = run(["--json", "--no-retrieval", "--cm", "er", "I lost my job.", *artifacts])
    assert result.exit_code == 0, result.output
    records = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(records) == K and all(r["score"] is None and r["given"] == ["cm"] for r in records)
    assert all(r["control_sequence"] == "EMOTIONAL_REACTION" and r["intents"] is None for r in records)
    table = run(["--no-retrieval", "--intent", "questioning", "I lost my job.", *artifacts])
    assert table.exit_code == 0 and "no retrieval" in table.stdout and "[given: it]" in table.stdout, table.output
    bad = run(["--no-retrieval", "--keep-skeleton", "hello", *artifacts])
    assert bad.exit_code == 1 and "cannot be combined" in bad.output


def test_editing_the_candidates_with_several_reranked_draws(artifacts):
    args = ["--json", "--init", "candidate", "--strength", "0.5", "--samples", "3", "--rerank", "mbr", *artifacts]
    result = run(["My dog is sick.", *args])
    assert result.exit_code == 0, result.output
    first = [json.loads(line)["response"] for line in result.stdout.splitlines()]
    assert len(first) == K and run(["My dog is sick.", *args]).stdout == result.stdout  # seeded
    for bad, message in ((["--init", "copy"], "--init copy"), (["--strength", "0"], "edit_strength=0"),
                         (["--rerank", "best"], "rerank=best"),
                         (["--init", "candidate", "--frames", "PRONOUN,?"], "cannot be combined with --frames")):
        result = run(["My dog is sick.", *bad, *artifacts])
        assert result.exit_code == 1 and message in result.output, result.output


def test_frames_build_a_new_skeleton(artifacts):
    result = run(["--json", "--frames", "Desiring,_,?", "hello", *artifacts])
    assert result.exit_code == 0, result.output
    assert all(json.loads(line)["sf"] == ["Desiring", "_", "?"] for line in result.stdout.splitlines())


@pytest.mark.parametrize("option, value, listed", [
    ("--intent", "questoning", "did you mean questioning"),
    ("--cm", "empathy", "exploration"),
    ("--frames", "Desirng", "did you mean Desiring"),
])
def test_invalid_labels_are_rejected_with_the_valid_ones(artifacts, option, value, listed):
    result = run([option, value, "hello", *artifacts])
    assert result.exit_code == 1 and listed in result.output and "valid: " in result.output


def test_empty_context_is_an_error(artifacts):
    result = run([" || ", *artifacts])
    assert result.exit_code == 1 and "empty context" in result.output


def test_long_context_is_truncated_with_a_notice(artifacts):
    result = run([" ".join(["word"] * 300), *artifacts])
    assert result.exit_code == 0, result.output
    assert "notice: the context has 300 WordPieces" in result.output


@pytest.mark.parametrize("option, target", [("--model", "train_diffusion"), ("--index", "build_index"),
                                            ("--taggers", "train_taggers@emotion")])
def test_missing_artifacts_name_the_dvc_target(artifacts, tmp_path, option, target):
    args = list(artifacts)
    args[args.index(option) + 1] = str(tmp_path / "absent")
    result = run(["hello", *args])
    assert result.exit_code == 1 and f"dvc repro {target}" in result.output


def test_overrides_on_a_control_row():
    row = controls_row("a:1", intents=["neutral", "agreeing", "wishing"], cm_er=True, words=list("abcdef"),
                       word_sent=[0, 0, 1, 1, 2, 2], sf=list("ABCDEF"), subword_ids=[1] * 7,
                       subword_word=[0, 0, 1, 2, 3, 4, 5])
    kept = Overrides.parse(["ip,ex"], "questioning,consoling", keep_skeleton=True).apply(row)
    assert kept["intents"] == ["questioning", "consoling", "consoling"] and kept["given"] == ["cm", "it", "sf"]
    assert (kept["cm_er"], kept["cm_ip"], kept["cm_ex"]) == (False, True, True)
    assert Overrides.parse(["none"]).apply(row)["cm_er"] is False
    assert parse_dialogue("a ||b|| ") == ["a", "b"]


def test_a_hand_set_level_frees_the_finer_ones_and_keeps_the_coarser():
    row = controls_row("a:1", intents=["neutral", "agreeing", "wishing"], cm_er=True, words=list("abcdef"),
                       word_sent=[0, 0, 1, 1, 2, 2], sf=list("ABCDEF"), subword_ids=[1] * 7,
                       subword_word=[0, 0, 1, 2, 3, 4, 5])
    assert Overrides().apply(row)["given"] == ["cm", "it", "sf"]  # nothing set: the candidate's three levels
    cm = Overrides.parse(["ex"]).apply(row)  # CM set: IT and SF freed
    assert cm["given"] == ["cm"] and (cm["cm_er"], cm["cm_ip"], cm["cm_ex"]) == (False, False, True)
    it = Overrides.parse([], "questioning").apply(row)  # IT set: the candidate's CM stays, SF freed, one sentence
    assert it["given"] == ["cm", "it"] and it["cm_er"] is True and it["intents"] == ["questioning"]
    assert it["word_sent"] == [0] * 7 and it["subword_word"] == list(range(7))  # the candidate's 7 WordPieces
    two = Overrides.parse([], "sympathizing,questioning").apply(row)  # the WordPieces split evenly over two sentences
    assert two["intents"] == ["sympathizing", "questioning"] and two["word_sent"] == [0, 0, 0, 0, 1, 1, 1]
    with pytest.raises(PipelineError, match="8 intents for a response of 7 WordPieces"):
        Overrides.parse([], ",".join(["neutral"] * 8)).apply(row)
    with pytest.raises(PipelineError, match="one intent with them"):
        Overrides.parse([], "neutral,wishing", "PRONOUN", ["PRONOUN"]).apply(row)
    with pytest.raises(PipelineError, match="need a CM and an intent too"):
        Overrides.parse(["er"], None, "PRONOUN", ["PRONOUN"]).apply(row, candidate=False)
    sf = Overrides.parse([], None, "PRONOUN,?", ["PRONOUN", "?"]).apply(row)  # SF set: CM and IT stay the candidate's
    assert sf["given"] == ["cm", "it", "sf"] and sf["sf"] == ["PRONOUN", "?"] and sf["intents"] == ["neutral"]
    alone = Overrides.parse(["er"], "questioning").apply(row, candidate=False)  # no candidate: the hand-set alone
    assert alone["given"] == ["cm", "it"]
    assert Overrides.parse([], "questioning").apply(row, candidate=False)["given"] == ["it"]
    for over in (cm, it, two, sf, alone):  # every row still encodes
        encode_example(["hi"], over, Vocab.build([row], ModelConfig(family="masked")), ModelConfig(family="masked"),
                       given=over["given"])


def test_length_donors_match_the_hand_set_levels():
    pool = pd.DataFrame([controls_row(f"{i}:1", cm_ex=i % 2 == 0, intents=["questioning" if i % 2 else "neutral"],
                                      subword_word=[0] * (i + 1)) for i in range(10)])
    ex = length_donors(pool, Overrides.parse(["ex"]), 3)
    assert [r["example_id"] for r in ex] == ["2:1", "4:1", "6:1"]  # CM ex alone: rows 0, 2, .., 8; median length 5
    q = length_donors(pool, Overrides.parse([], "questioning"), 1)
    assert [r["example_id"] for r in q] == ["5:1"]  # rows 1, 3, .., 9; median length 6
    assert len(length_donors(pool, Overrides.parse([], "wishing"), 2)) == 2  # no match: the whole pool


# --- bad input: a normal answer or one `error:` line, never a traceback ---------------------------------------------
def test_options_resolve_the_decoding_and_refuse_what_respond_refuses():
    base = section(yaml.safe_load(Path("params.yaml").read_text()), "sample", SampleConfig)
    base = dataclasses.replace(base, candidates=1, edit_candidates=3, num_samples=6, guidance=1.0)
    edit = Options(init="candidate", samples=2, guidance=2.5, one=True)
    assert edit.decoding(base) == dataclasses.replace(base, candidates=3, num_samples=2, guidance=2.5)
    assert Options().decoding(base) == base and edit.responses(edit.decoding(base), 5) == 3
    assert Options().responses(base, 5) == 5 and Options(k=2, one=True).responses(base, 5) == 2
    assert Options(cm=("ex",), intents="questioning").overrides(lambda: pytest.fail("frames not asked")) == \
        Overrides(cm=frozenset({"ex"}), intents=("questioning",))
    flag = lambda name: "--" + name.replace("_", "-")
    with pytest.raises(PipelineError, match="^--init candidate edits .* with --frames$"):
        Options(init="candidate", frames="").check(flag)
    with pytest.raises(PipelineError, match="^no_retrieval has no candidate: .* init candidate or keep_skeleton$"):
        Options(no_retrieval=True, keep_skeleton=True).check()
    Options(no_retrieval=True, cm=("er",)).check()


def fuzz_inputs() -> list[bytes]:
    rng = random.Random(0)
    return [
        *(rng.randbytes(n) for n in (1, 64, 300, 2000)),  # random bytes (a few with newlines, most invalid UTF-8)
        bytes(rng.choice(b"ab |\n\0\xff\xc3\xa9") for _ in range(400)),  # delimiters, NULs and broken UTF-8 dense
        b"\0\0\0", b"I lost my job\0. || Oh no\0!\n",  # NULs alone and inside text
        b"caf\xe9 \xff\xfe || \xc3(\n\xed\xa0\x80 surrogate\r\n",  # latin-1, stray bytes, cut and surrogate sequences
        b"\x01\x02\x7f || \x1b[31m\n",  # control characters only
        b"", b"\n\n  \n", b"\n\nhello\n\n", b" || \n",  # empty, blank lines only, blank lines around one, no turn
        b"word " * 200_000 + b"\xff",  # a 1 MB line: retrieval and the model truncate it
    ]


def check_dialogues(read) -> None:
    """`read()` returns dialogues of clean, non-empty turns or raises PipelineError; nothing else."""
    try:
        dialogues = read()
    except PipelineError:
        return
    assert dialogues and all(turns and all(t.strip() for t in turns) for turns in dialogues)
    assert all("\0" not in t and t.encode("utf-8") for turns in dialogues for t in turns)  # no NUL, no surrogate


@pytest.mark.parametrize("data", fuzz_inputs(), ids=range(len(fuzz_inputs())))
def test_read_contexts_from_stdin_and_file_never_crashes(data, tmp_path):
    (tmp_path / "in.txt").write_bytes(data)
    check_dialogues(lambda: read_contexts(None, None, io.BytesIO(data)))
    check_dialogues(lambda: read_contexts(None, str(tmp_path / "in.txt"), io.BytesIO()))
    check_dialogues(lambda: read_contexts(data.decode("utf-8", errors="surrogateescape"), None, io.BytesIO()))  # argv


def test_invalid_bytes_and_nuls_are_replaced_with_one_notice_each(capsys):
    assert decode_lines([b"ok", b"caf\xc3\xa9 \xff", b"a\0b", b"\xfe\0"]) == ["ok", "caf\u00e9 \ufffd", "ab", "\ufffd"]
    assert capsys.readouterr().err.splitlines() == ["notice: invalid UTF-8 on lines 2, 4, replaced by U+FFFD",
                                                    "notice: NUL bytes on lines 3, 4, removed"]
    assert read_contexts(None, None, io.BytesIO(b"\n a || \xff \n\n")) == [["a", "\ufffd"]]
    assert "on line 2," in capsys.readouterr().err
    with pytest.raises(PipelineError, match="cannot read"):
        read_contexts(None, "/nonexistent/dialogues.txt", io.BytesIO())


@pytest.mark.parametrize("data", fuzz_inputs(), ids=range(len(fuzz_inputs())))
def test_cli_answers_or_prints_one_error_line(artifacts, data):
    result = CliRunner().invoke(respond.app, ["--json", *artifacts], input=data)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        records = [json.loads(line) for line in result.stdout.splitlines()]
        assert records and len(records) % K == 0
        assert len(data) < 10**6 or "retrieval reads only the first" in result.stderr  # the 1 MB line is truncated
    else:
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.exit_code == 1 and len(errors) == 1 and result.stderr.splitlines()[-1] == errors[0]


def test_cli_file_with_invalid_utf8_is_answered_with_a_notice(artifacts, tmp_path):
    (tmp_path / "in.txt").write_bytes(b"I failed my exam \xff\xfe. || Oh no!\n\nMy cat is \0sick.\n")
    result = run(["--json", "--file", str(tmp_path / "in.txt"), *artifacts])
    assert result.exit_code == 0, result.output
    assert len(result.stdout.splitlines()) == 2 * K
    assert "notice: invalid UTF-8 on line 1," in result.stderr and "notice: NUL bytes on line 3," in result.stderr


def test_respond_one_edits_as_stage_sample_edit_keeps(artifacts, tmp_path):
    """respond --init candidate --one and stage sample --mode edit, on the same context and candidates with the same
    settings, keep the same text: one decoder (pipeline.decoder.Decoder) serves both."""
    torch.set_num_threads(1)
    root = Path(artifacts[artifacts.index("--params") + 1]).parent
    # a pool of several-word responses (the fixture's are one word: an edit could only keep it)
    pool = pd.DataFrame([controls_row(f"t{i}:1", emotion=EMOTIONS[i], response=" ".join(SENTENCES[i][0]),
                                      **{k: v for k, v in control_row(*SENTENCES[i]).items() if k != "context"})
                         for i in range(len(SENTENCES))])
    Index.build(pool, np.random.default_rng(1).normal(size=(len(pool), ENCODER_DIM))).save(tmp_path / "index")
    cfg = ModelConfig(emb_dim=8, width=16, layers=1, heads=2, ffn=32, dropout=0.0, max_len=48, max_context=16, T=10)
    vocab = Vocab.build(pool.to_dict("records"), cfg)
    torch.manual_seed(0)
    save_model(tmp_path / "diffusion", DiffusEmpModel(cfg, vocab).state_dict(), cfg, vocab)
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["sample"].update(num_samples=3, rerank="mbr", edit_candidates=K, edit_strength=0.5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    turns = ["My dog is sick.", "Oh no!", "He will not eat."]

    result = run([" || ".join(turns), "--json", "--init", "candidate", "--one", "--index", str(tmp_path / "index"),
                  "--taggers", str(root / "taggers"), "--model", str(tmp_path / "diffusion"),
                  "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0, result.output
    (answer,) = [json.loads(line) for line in result.stdout.splitlines()]

    sampling = section(params, "sample", SampleConfig).for_edit()
    responder = Responder.load(tmp_path / "index", root / "taggers", tmp_path / "diffusion", sampling, seed=0)
    candidates = pd.DataFrame([{"example_id": "q:1", "split": "test", "rank": c["rank"], "score": c["score"],
                                "cand_example_id": c["example_id"], "cand_response": c["response"],
                                **{name: c[name] for name in CONTROL_NAMES}}
                               for c in responder.retrieve(turns, K, params["gamma"])])
    write_frame(tmp_path / "candidates.parquet", candidates, CANDIDATES)
    write_frame(tmp_path / "controls.parquet", pd.DataFrame([controls_row("q:1", split="test", context=turns)]),
                CONTROLS)
    result = CliRunner().invoke(sample.app, [
        "--mode", "edit", "--candidates", str(tmp_path / "candidates.parquet"),
        "--controls", str(tmp_path / "controls.parquet"), "--model", str(tmp_path / "diffusion"),
        "--taggers", str(root / "taggers"), "--out", str(tmp_path / "edit.parquet"),
        "--params", str(tmp_path / "params.yaml")])
    assert result.exit_code == 0, result.output
    (kept,) = read_frame(tmp_path / "edit.parquet", SAMPLES).to_dict("records")
    assert len(answer["response"].split()) > 1 and answer["response"] not in set(pool["response"])  # an edit
    assert (kept["rank"], kept["text"]) == (answer["rank"], answer["response"])
