"""The quality-per-minute sweep: designs merge into params, each mark is a resumed run of the same training."""
import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.decoder import Decoder
from pipeline.diffusion.config import SampleConfig
from pipeline.errors import PipelineError
from pipeline.experiments.decoding_sweep import sweep_decoding
from pipeline.experiments.sweep import Designs, cpu_minutes, fluency_column, merged, paired_differences, run_design
from pipeline.params import load_params
from pipeline.rerank import Judges
from test_trainer import SENTENCES, control_row, fresh_model, tiny_setup

# params.yaml with a tiny continuous model and short training (the sections are read whole, as stage sweep reads them)
PARAMS = {**merged(load_params(Path(__file__).resolve().parents[1] / "params.yaml"), {
    "model": {"family": "continuous", "init": "random", "emb_dim": 16, "width": 32, "layers": 1, "heads": 2,
              "ffn": 64, "max_len": 48, "max_context": 8, "T": 50},
    "train": {"steps": 100, "batch_size": 4, "lr": 1e-3, "warmup_steps": 0, "lr_decay": "none", "log_every": 2,
              "valid_examples": 2, "valid_sample_examples": 2, "valid_sample_steps": 3, "bf16": False,
              "length_group_batches": 0}}), "seed": 1}
SAMPLING = SampleConfig(split="test", subset=None, steps=3, clamp=False, temperature=0.0, solver="ancestral",
                        edit_strength=0.5, num_samples=1, rerank="none", candidates=None, edit_candidates=None,
                        batch_size=4, bf16=False)


def test_merged_overrides_one_section_deep_and_refuses_other_sections():
    out = merged(PARAMS, {"model": {"family": "masked"}})
    assert out["model"]["family"] == "masked" and out["model"]["width"] == 32
    assert PARAMS["model"]["family"] == "continuous"  # the base is left as it was
    with pytest.raises(PipelineError, match="only `model` and `train`"):
        merged(PARAMS, {"sample": {"steps": 3}})


def test_each_mark_continues_the_same_run(tmp_path):
    torch.set_num_threads(1)
    rows = [control_row(*s) for s in SENTENCES] * 2
    out = run_design("masked", PARAMS, {"model": {"family": "masked"}}, rows, rows[:2], [2, 4], "steps", tmp_path,
                     torch.device("cpu"), fluency_nll=None)
    assert [r["steps"] for r in out] == [2, 4] and [r["family"] for r in out] == ["masked"] * 2
    assert cpu_minutes(pd.DataFrame(out), {"masked": 8.0})["cpu_minutes_est"][1] == round(4 * 4 / 8.0 / 60, 2)
    assert all(math.isnan(r["fluency_ppl"]) and len(json.loads(r["texts"])) == 2 for r in out)
    assert set(out[0]) >= {"sampling_accuracy", "accuracy_q1", "accuracy_q4", "valid_loss"}
    assert out[1]["sampling_accuracy"] == pytest.approx(np.mean(json.loads(out[1]["example_accuracy"])), abs=1e-4)
    table = fluency_column(pd.DataFrame(out), lambda texts: np.full(len(texts), math.log(20.0)))
    assert table["fluency_ppl"].tolist() == pytest.approx([20.0, 20.0])


def test_each_mark_is_sampled_by_every_decoder_and_clamping_only_in_the_continuous_family(tmp_path):
    torch.set_num_threads(1)
    rows = [control_row(*s) for s in SENTENCES] * 2
    names = ["deterministic", "sampled", "clamped"]
    continuous = run_design("continuous", PARAMS, {}, rows, rows[:2], [2], "steps", tmp_path, torch.device("cpu"),
                            None, names)
    masked = run_design("masked", PARAMS, {"model": {"family": "masked"}}, rows, rows[:2], [2], "steps", tmp_path,
                        torch.device("cpu"), None, names)
    assert [r["decoder"] for r in continuous] == names and [r["decoder"] for r in masked] == names[:2]
    assert len({r["valid_loss"] for r in continuous}) == 1  # one trained model, sampled three ways


def test_paired_differences_pair_each_row_with_the_baseline_nearest_in_minutes():
    def row(design, decoder, mark, minutes, accuracy):
        return {"design": design, "decoder": decoder, "mark": mark, "minutes": minutes, "cpu_minutes_est": minutes,
                "example_accuracy": json.dumps(accuracy)}
    table = pd.DataFrame([row("today", "sampled", 100, 2.0, [0.5, 0.5, 0.5]),
                          row("today", "sampled", 200, 4.0, [0.6, 0.6, 0.9]),
                          row("today", "deterministic", 200, 4.0, [0.0, 0.0, 0.0]),
                          row("fast", "sampled", 200, 3.2, [0.7, 0.7, 1.0])])
    [out] = paired_differences(table, "today", resamples=200, seed=0)
    # 3.2 minutes is nearer 4.0 than 2.0; every example gains 0.1, so every resample does too
    assert (out["design"], out["mark"], out["baseline_mark"], out["baseline_minutes"]) == ("fast", 200, 200, 4.0)
    assert out["difference"] == pytest.approx({"mean": 0.1, "low": 0.1, "high": 0.1})
    with pytest.raises(PipelineError, match="baseline 'slow' is not a design"):
        paired_differences(table, "slow", resamples=10, seed=0)


def test_paired_differences_mark_a_decoder_the_baseline_lacks_unpaired():
    table = pd.DataFrame([{"design": d, "decoder": dec, "mark": 100, "minutes": 2.0, "cpu_minutes_est": 2.0,
                           "example_accuracy": "[0.5, 0.5]"}
                          for d, dec in [("masked", "sampled"), ("continuous", "sampled"), ("continuous", "clamped")]])
    sampled, clamped = paired_differences(table, "masked", resamples=10, seed=0)
    assert sampled["difference"]["mean"] == 0.0 and "unpaired" not in sampled
    assert clamped["unpaired"] == "the baseline 'masked' has no clamped rows" and "difference" not in clamped


def test_designs_file_needs_one_kind_of_marks(tmp_path):
    path = tmp_path / "designs.yaml"
    path.write_text("steps: [2, 4]\ndesigns: {masked: {model: {family: masked}}}\n")
    designs = Designs.load(path)
    assert (designs.unit, designs.marks, designs.valid_examples) == ("steps", [2.0, 4.0], 64)
    path.write_text("minutes: [1]\nsteps: [2]\ndesigns: {masked: {}}\n")
    with pytest.raises(PipelineError, match="`minutes:` or `steps:`"):
        Designs.load(path)
    path.write_text("minutes: [1]\ndesigns: {masked: {}}\nvalid: 3\n")
    with pytest.raises(PipelineError, match=r"designs.yaml: unknown key `designs file.valid`"):
        Designs.load(path)
    assert designs.decoder_names == ["deterministic", "sampled"]
    path.write_text("minutes: [1]\ndesigns: {masked: {}}\ndecoders: [greedy]\n")
    with pytest.raises(PipelineError, match=r"unknown decoders \['greedy'\]"):
        Designs.load(path)


def test_decoding_sweep_keeps_the_most_fluent_of_the_first_n_draws():
    torch.set_num_threads(1)
    vocab, _, _ = tiny_setup()
    model, rows = fresh_model(vocab).eval(), [control_row(*s) for s in SENTENCES]
    nll = lambda texts: np.array([math.log(1 + len(t)) for t in texts])  # a shorter text is "more fluent"
    decoder = Decoder(model, vocab, SAMPLING, Judges(fluency_nll=nll))
    table = sweep_decoding(decoder, rows, ["gold"] * len(rows), seed=3, temperatures=[0.0], draws=[1, 3], edit=False,
                           bertscore=lambda c, r: np.array([len(t) for t in c]))
    assert [(r["steps"], r["temperature"], r["candidates"], r["draws"], r["rerank"]) for r in table] == [
        (3, 0.0, 1, 1, "fluency"), (3, 0.0, 1, 3, "fluency")]
    by_steps = sweep_decoding(decoder, rows, ["gold"] * len(rows), seed=3, temperatures=[0.0], draws=[1], edit=False,
                              bertscore=lambda c, r: np.array([len(t) for t in c]), steps=[None, 2])
    assert [r["steps"] for r in by_steps] == [None, 2]
    assert math.isnan(table[0]["acc_cm"])  # no judge, no controllability
    texts, _ = decoder.with_settings(num_samples=3).draw(rows, seed=3)
    assert decoder.draw(rows, seed=3)[0] == texts[:1]  # draw j does not depend on how many are drawn
    for row, n in zip(table, (1, 3)):
        kept = [min(column[:n], key=len) for column in zip(*texts)]  # the shortest of the first n, the first on ties
        assert row["bertscore_f1_minilm"] == round(float(np.mean([len(t) for t in kept])), 4)
        assert row["fluency_ppl_smollm2"] == round(math.exp(np.mean([math.log(1 + len(t)) for t in kept])), 1)
    # two candidates per example (rows 0-1, 2-3): with c = 2 the shortest of the pair is kept, the first on ties
    pairs = sweep_decoding(decoder, rows, ["gold"] * len(rows), seed=3, temperatures=[0.0], draws=[1], edit=False,
                           bertscore=lambda c, r: np.array([len(t) for t in c]), candidates=[1, 2], per_example=2)
    assert [r["candidates"] for r in pairs] == [1, 2]
    first, shortest = texts[0][::2], [min(texts[0][i:i + 2], key=len) for i in (0, 2)]
    for row, kept in zip(pairs, (first, shortest)):
        assert row["bertscore_f1_minilm"] == round(float(np.mean([len(t) for t in kept])), 4)
    with pytest.raises(PipelineError, match="candidates"):
        sweep_decoding(decoder, rows, ["gold"] * len(rows), seed=3, temperatures=[0.0], draws=[1], edit=False,
                       bertscore=None, candidates=[3], per_example=2)


def test_decoding_sweep_scores_each_rule_with_the_judge_of_the_controls_rule():
    class EvenJudge:  # a text of even length keeps every control, an odd one none; one intent position each
        def check(self, rows, texts):
            even = np.array([len(t) % 2 == 0 for t in texts])
            return np.repeat(even[:, None], 3, axis=1), np.stack([even.astype(int), np.ones(len(texts), int)], axis=1)

    torch.set_num_threads(1)
    vocab, _, _ = tiny_setup()
    model, rows = fresh_model(vocab).eval(), [control_row(*s) for s in SENTENCES]
    nll = lambda texts: np.array([math.log(1 + len(t)) for t in texts])
    decoder = Decoder(model, vocab, dataclasses.replace(SAMPLING, num_samples=3), Judges(nll, EvenJudge()))
    table = sweep_decoding(decoder, rows, ["gold"] * len(rows), seed=3, temperatures=[0.0], draws=[3], edit=False,
                           bertscore=lambda c, r: np.array([len(t) for t in c]), reranks=("none", "controls"),
                           frames=lambda texts: [["Emotion"] * len(t.split()) for t in texts])
    texts, _ = decoder.draw(rows, seed=3)
    first, best = texts[0], [min(column, key=lambda t: (len(t) % 2, len(t))) for column in zip(*texts)]
    for row, kept in zip(table, (first, best)):
        share = 100 * np.mean([len(t) % 2 == 0 for t in kept])
        assert row["acc_cm"] == pytest.approx(share, abs=0.01) and row["acc_it"] == pytest.approx(share, abs=0.01)
        assert row["bertscore_f1_minilm"] == round(float(np.mean([len(t) for t in kept])), 4)
        # F1-SF: every word of a kept text tagged "Emotion", against the rows' "Emotion" on every 3rd word
        tagged, control = sum(len(t.split()) for t in kept), sum(1 for r in rows for f in r["sf"] if f == "Emotion")
        overlap = sum(min(len(t.split()), sum(f == "Emotion" for f in r["sf"])) for t, r in zip(kept, rows))
        assert row["f1_sf"] == round(100 * 2 * overlap / (tagged + control), 2)
    assert math.isnan(sweep_decoding(decoder, rows, ["gold"] * len(rows), seed=3, temperatures=[0.0], draws=[1],
                                     edit=False, bertscore=lambda c, r: np.zeros(len(c)))[0]["f1_sf"])  # no F1-SF
    with pytest.raises(PipelineError, match="controls a judge"):
        sweep_decoding(Decoder(model, vocab, SAMPLING, Judges(nll)), rows, ["gold"] * len(rows), seed=3,
                       temperatures=[0.0], draws=[3], edit=False, bertscore=None, reranks=("controls",))
