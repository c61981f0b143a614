"""The respond command through typer's CliRunner, on a tiny index, emotion tagger and random diffusion model."""
import json

import numpy as np
import pandas as pd
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from typer.testing import CliRunner

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.trainer import save_model
from pipeline.diffusion.vocab import Vocab
from pipeline.labels import EMOTIONS
from pipeline.models import ENCODER_DIM, ENCODER_NAME
from pipeline.respond import Overrides, parse_dialogue
from pipeline.retrieval import Index
from pipeline.taggers import Tagger
from stages import respond
from tests.test_retrieval import controls_row

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
    Tagger("emotion", head, {"name": ENCODER_NAME, "max_seq_length": 128}, {}).save(root / "taggers" / "emotion")

    cfg = ModelConfig(emb_dim=8, width=16, layers=1, heads=2, ffn=32, dropout=0.0, max_len=48, max_context=16, T=10)
    vocab = Vocab.build(pool.to_dict("records"), cfg)
    save_model(root / "diffusion", DiffusEmpModel(cfg, vocab).state_dict(), cfg, vocab)

    (root / "params.yaml").write_text(f"seed: 0\ngamma: 0.2\nretrieve:\n  k: {K}\nsample:\n  steps: 2\n  clamp: false\n")
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
    assert all(r["control_sequence"].startswith("EXPLORATION QUESTIONING") for r in records)
    assert [r["rank"] for r in records] == [0, 1, 0, 1] and isinstance(records[0]["response"], str)


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
    row = controls_row("a:1", intents=["neutral", "agreeing", "wishing"], cm_er=True)
    out = Overrides.parse(["ip,ex"], "questioning,consoling").apply(row)
    assert out["intents"] == ["questioning", "consoling", "consoling"]
    assert (out["cm_er"], out["cm_ip"], out["cm_ex"]) == (False, True, True)
    assert Overrides.parse(["none"]).apply(row)["cm_er"] is False
    assert parse_dialogue("a ||b|| ") == ["a", "b"]
