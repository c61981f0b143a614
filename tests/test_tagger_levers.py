"""The taggers' speed levers (pipeline/experiments/tagger_levers.py): what a lever turns off, the paired macro-F1
difference on a hand-computed case, and the interleaved step timing on a tiny random BERT."""
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from pipeline.experiments.tagger_levers import LEVERS, lever_encoder, paired_macro_f1, step_seconds
from pipeline.finetune import TaggerModel, tokenize
from pipeline.io import read_json
from pipeline.models import wordpiece_tokenizer
from tests.test_taggers_finetune import tiny_bert


def test_no_dropout_turns_off_every_dropout_of_encoder_and_head_and_today_keeps_them():
    ids = torch.randint(1000, 2000, (4, 12))
    types, mask = torch.zeros_like(ids), torch.ones_like(ids)
    quiet = TaggerModel(lever_encoder(LEVERS["no_dropout"], tiny_bert()), {"intent": 9}).train()
    assert quiet.dropout.p == 0.0 and all(m.p == 0.0 for m in quiet.modules() if isinstance(m, torch.nn.Dropout))
    assert torch.equal(quiet(ids, types, mask)["intent"], quiet(ids, types, mask)["intent"])  # train mode, no noise
    noisy = TaggerModel(lever_encoder(LEVERS["today"], tiny_bert()), {"intent": 9}).train()
    assert noisy.dropout.p == 0.1
    assert not torch.equal(noisy(ids, types, mask)["intent"], noisy(ids, types, mask)["intent"])


def test_no_attention_dropout_turns_off_the_attention_probabilities_dropout_alone():
    model = TaggerModel(lever_encoder(LEVERS["no_attention_dropout"], tiny_bert()), {"intent": 9})
    p = {name: m.p for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)}
    attention = {name for name in p if name.endswith("attention.self.dropout")}
    assert len(attention) == 2 and all(p[name] == 0.0 for name in attention)  # tiny_bert: 2 layers
    assert len(p) > 2 and all(v == 0.1 for name, v in p.items() if name not in attention)
    assert model.encoder.config.attention_probs_dropout_prob == 0.0 and model.dropout.p == 0.1


def test_paired_macro_f1_by_hand():
    y = {"intent": np.array([0, 0, 1, 1])}
    right, one_wrong = {"intent": np.array([0, 0, 1, 1])}, {"intent": np.array([0, 1, 1, 1])}
    out = paired_macro_f1(y, right, one_wrong, resamples=200)
    # one_wrong: label 0 F1 = 2/3 (precision 1, recall 1/2), label 1 F1 = 0.8 (precision 2/3, recall 1) -> 73.33
    assert (out["a"], out["b"], out["difference"]) == (100.0, 73.33, -26.67)
    assert out["low"] <= out["difference"] <= out["high"] <= 0.0
    same = paired_macro_f1(y, right, right, resamples=50)
    assert (same["difference"], same["low"], same["high"]) == (0.0, 0.0, 0.0)


def test_step_seconds_times_every_lever_in_every_round():
    texts = [f"sentence number {i} " + "word " * (i % 7) for i in range(40)]
    tokens = tokenize(wordpiece_tokenizer(), texts, None, 16, 0)
    y = {"intent": np.arange(40) % 9}
    out = step_seconds("intent", tokens, y, 8, False, ["today", "no_dropout"], batches=2, rounds=2, seed=0,
                       bert=tiny_bert())
    assert set(out) == {"today", "no_dropout"}
    for figures in out.values():
        assert len(figures["rounds_seconds"]) == 2 and figures["seconds_per_step"] > 0
        assert figures["seconds_per_step"] == pytest.approx(float(np.median(figures["rounds_seconds"])), abs=1e-4)


def test_stage_with_lever_today_reproduces_the_saved_tagger_and_no_dropout_is_scored_beside_it(tmp_path, monkeypatch):
    """stages.train_taggers then stages.tagger_levers on the same tiny emotion data: `today` fine-tunes as the stage
    did, so both predict alike (difference 0); `no_dropout` trains another model, scored against the saved one."""
    import pipeline.experiments.tagger_levers
    from stages.tagger_levers import app
    from tests.test_taggers_finetune import run_emotion_stage

    def encoder():  # like the packaged MiniLM's loading, it leaves the random state as it found it
        state = torch.get_rng_state()
        bert = tiny_bert()
        torch.set_rng_state(state)
        return bert

    run_emotion_stage(tmp_path, monkeypatch, encoder)
    monkeypatch.setattr(pipeline.experiments.tagger_levers, "pretrained_encoder", encoder)
    common = ["--name", "emotion", "--dialogues", tmp_path / "dialogues.parquet", "--taggers", tmp_path,
              "--params", tmp_path / "params.yaml", "--batches", 1, "--rounds", 1, "--resamples", 20]
    reports = {}
    for lever in ("today", "no_dropout"):
        result = CliRunner().invoke(app, [str(a) for a in [*common, "--lever", lever, "--out", tmp_path / lever]])
        assert result.exit_code == 0, result.output
        reports[lever] = read_json(tmp_path / lever)
    today = reports["today"]["macro_f1"]
    assert all(today[s]["difference"] == 0 and today[s]["a"] == today[s]["b"] for s in ("valid", "test"))
    assert set(reports["no_dropout"]["step_seconds"]) == {"today", "no_dropout"}
    assert reports["no_dropout"]["lever_epochs"] != reports["today"]["lever_epochs"]  # another model was trained
    bad = CliRunner().invoke(app, [str(a) for a in [*common, "--lever", "fast"]])
    assert bad.exit_code == 1 and "lever from today, no_dropout, no_attention_dropout" in bad.output
