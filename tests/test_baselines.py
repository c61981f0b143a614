"""The baselines of Table 2 (pipeline/baselines): prompts, the response-only loss, the seq2seq model, the shared
training loop's resume, decoding, and the comparison with diffusemp, on tiny models and hand-made tables."""
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from pipeline.ablations import paired_differences
from pipeline.baselines import causal_lm, seq2seq
from pipeline.baselines.compare import BASE, COMPARED, assemble, compare
from pipeline.baselines.decoding import BaselineDecoder, NucleusParams, greedy, nucleus
from pipeline.baselines.fit import given_levels
from pipeline.baselines.page import scores_table, speed_table, steering_table, training_minutes
from pipeline.baselines.prompts import controls_text, dialogue_text, prompt_text
from pipeline.baselines.training import TrainParams, train
from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.scoring import score_systems
from tests.test_scoring import controls_row, stand_in_scorers, tables

CONTROLS = {"cm_er": True, "cm_ip": False, "cm_ex": True, "intents": ["sympathizing", "questioning"],
            "sf": ["_", "PRONOUN", "?"]}


class WordTokenizer:
    """A stand-in tokenizer: one id per known word (whitespace and the newline are words too), eos 1, pad 0."""

    eos_token_id, pad_token_id = 1, 0

    def __init__(self):
        self.vocab = {"<pad>": 0, "<eos>": 1}

    def __call__(self, text, add_special_tokens=False):
        pieces = text.replace("\n", " \n ").split(" ")
        ids = [self.vocab.setdefault(p, len(self.vocab)) for p in pieces if p]

        class Out:
            input_ids = ids
        return Out()


def tiny_llama(vocab_size=64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    return LlamaForCausalLM(LlamaConfig(vocab_size=vocab_size, hidden_size=16, intermediate_size=32,
                                        num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                                        tie_word_embeddings=True)).eval()


def test_dialogue_roles_alternate_back_from_the_speaker():
    assert dialogue_text(["a", "b", "c"]) == "Speaker: a\nListener: b\nSpeaker: c\nListener:"
    assert dialogue_text(["a", "b"]) == "Listener: a\nSpeaker: b\nListener:"


def test_the_controls_line_names_only_the_given_levels():
    assert controls_text(CONTROLS) == ("Controls: mechanisms emotional reaction, exploration; intents sympathizing, "
                                       "questioning; frames _ PRONOUN ?")
    assert controls_text({**CONTROLS, "given": ["it"]}) == "Controls: intents sympathizing, questioning"
    assert controls_text({**CONTROLS, "cm_er": False, "cm_ex": False, "given": ["cm"]}) == "Controls: mechanisms none"
    assert controls_text({**CONTROLS, "given": []}) == "Controls: none"
    assert prompt_text(["hi"], {**CONTROLS, "given": []}) == "Controls: none\nSpeaker: hi\nListener:"
    assert prompt_text(["hi"]) == "Speaker: hi\nListener:"


def test_a_pair_keeps_the_controls_line_whole_and_the_newest_dialogue():
    tok = WordTokenizer()
    cfg = causal_lm.LMParams(max_prompt=3, max_response=2)
    prompt, reply = causal_lm.encode_pair(tok, ["one two three four"], "so sad here", {**CONTROLS, "given": []}, cfg)
    words = {v: k for k, v in tok.vocab.items()}
    assert [words[i] for i in prompt] == ["Controls:", "none", "\n", "four", "\n", "Listener:"]  # the line whole,
    # then the dialogue's newest 3 tokens
    assert [words[i] for i in reply] == ["so", "sad", "<eos>"]  # the first max_response tokens, then the end
    assert causal_lm.encode_pair(tok, ["x"], None, None, cfg)[1] == []


def test_the_response_loss_counts_only_response_tokens():
    model = tiny_llama()
    pairs = [([5, 6, 7], [8, 9, 1]), ([10, 11], [12, 1])]
    loss = causal_lm.response_loss(model, pairs, pad_id=0)
    # by hand: full logits, labels -100 everywhere but at the response tokens
    nll = []
    for prompt, reply in pairs:
        ids = torch.tensor([prompt + reply])
        logits = model(input_ids=ids).logits[0]
        nll += [F.cross_entropy(logits[len(prompt) - 1 + j][None], torch.tensor([t])) for j, t in enumerate(reply)]
    assert loss.item() == pytest.approx(torch.stack(nll).mean().item(), abs=1e-5)


def tiny_trs(**kw):
    cfg = seq2seq.TRSParams(**{"width": 16, "heads": 2, "layers": 1, "ffn": 32, "dropout": 0.0, "max_source": 8,
                               "max_response": 4, **kw})
    torch.manual_seed(0)
    return seq2seq.Seq2Seq(cfg, vocab_size=128)


def test_trs_starts_at_chance_and_learns_a_pair_that_greedy_then_decodes():
    model = tiny_trs()
    pair = ([5, 6, 7], [seq2seq.START, 20, 21, seq2seq.END])
    first = seq2seq.mle_loss(model, [pair]).item()
    assert abs(first - math.log(128)) < 1.5  # unit-scale logits at initialisation
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(60):
        loss = seq2seq.mle_loss(model, [pair])
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    model.eval()
    assert greedy(model, [pair[0]], max_len=4) == [[20, 21]]
    assert all(len(ids) <= 2 for ids in greedy(model, [pair[0], [9]], max_len=2))


def test_a_seq2seq_pair_cuts_the_source_to_its_newest_tokens():
    tok = WordTokenizer()
    cfg = tiny_trs(max_source=3, max_response=1).cfg
    source, target = seq2seq.encode_pair(tok, ["a b", "c d"], "x y", cfg)
    assert source == [tok.vocab["b"], seq2seq.END, tok.vocab["c"], tok.vocab["d"]][-3:]
    assert target == [seq2seq.START, tok.vocab["x"], seq2seq.END]


def run(model, pairs, tmp_path, steps, stop_at=None):
    def loss_of(idx):
        if stop_at is not None and loss_of.calls == stop_at:
            raise KeyboardInterrupt  # a kill between two steps
        loss_of.calls += 1
        return seq2seq.mle_loss(model, [pairs[i] for i in idx])
    loss_of.calls = 0
    cfg = TrainParams(steps=steps, batch_size=2, lr=1e-2, warmup_steps=1, weight_decay=0.0)
    return train(model, loss_of, seq2seq.pair_lengths(pairs), cfg, False, 0, tmp_path / "state.pt", 0.0, {"t": 1})


def test_a_killed_run_resumes_to_the_same_weights(tmp_path):
    pairs = [([5, 6], [seq2seq.START, 20 + i, seq2seq.END]) for i in range(6)]
    straight = tiny_trs(dropout=0.1)
    run(straight, pairs, tmp_path / "a", steps=6)
    resumed = tiny_trs(dropout=0.1)
    (tmp_path / "b").mkdir()
    (tmp_path / "a").mkdir(exist_ok=True)
    with pytest.raises(KeyboardInterrupt):
        run(resumed, pairs, tmp_path / "b", steps=6, stop_at=4)
    again = tiny_trs(dropout=0.1)  # a new process: fresh weights, the state comes from the checkpoint
    summary = run(again, pairs, tmp_path / "b", steps=6)
    assert summary["steps"] == 6
    for (name, a), b in zip(straight.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name


def test_condition_dropout_draws_are_seeded_and_weighted():
    levels = [["cm", "it", "sf"], ["cm"], []]
    draws = given_levels(3000, levels, [0.5, 0.5, 0.0], seed=1)
    assert draws == given_levels(3000, levels, [0.5, 0.5, 0.0], seed=1)
    counts = {tuple(d): draws.count(d) for d in map(list, levels)}
    assert counts[()] == 0 and abs(counts[("cm", "it", "sf")] - 1500) < 120


def test_nucleus_sampling_is_seeded_and_stops_at_the_end_token():
    model = tiny_llama()
    model.generation_config.pad_token_id = 0
    prompts = [[5, 6, 7], [8], [9, 10]]
    cfg = NucleusParams(top_p=0.9, temperature=0.7)
    torch.manual_seed(3)
    first = nucleus(model, prompts, cfg, max_new=5, pad_id=0, eos_id=1)
    torch.manual_seed(3)
    assert nucleus(model, prompts, cfg, max_new=5, pad_id=0, eos_id=1) == first
    assert all(len(x) <= 5 and 1 not in x for x in first)


def test_the_decoder_refuses_a_model_trained_otherwise(tmp_path):
    class Saved:
        def save_pretrained(self, path):
            (path / "tokenizer.json").write_text("{}")

    causal_lm.save_lm(tmp_path / "m", tiny_llama(), Saved(), causal_lm.LMParams(4, 4), controls=False)

    with pytest.raises(PipelineError, match="trained without controls"):
        BaselineDecoder("transfertransfo_controls", tmp_path / "m", NucleusParams(0.9, 0.7))


def test_paired_differences_by_hand():
    arrays = {"a": {"x": np.array([1.0, 2.0, 3.0])}, "b": {"x": np.array([2.0, 2.0, 5.0])}}
    out = paired_differences(arrays, "a", resamples=200, statistics={"x": lambda a: float(a["x"].mean())})
    assert out["b"]["x"]["delta"] == pytest.approx(1.0)  # (9 - 6) / 3
    assert 0.0 <= out["b"]["x"]["low"] <= 1.0 <= out["b"]["x"]["high"] <= 2.0  # per-example differences 1, 0, 2
    assert "a" not in out


def test_baselines_are_scored_on_diffusemp_examples_against_its_candidates_controls():
    t = tables()
    samples = {"trs": pd.DataFrame({"example_id": ["c1:1", "c2:1"], "rank": 0, "text": ["i am sorry", "wow"]}),
               "transfertransfo": pd.DataFrame({"example_id": ["c2:1", "c1:1"], "rank": 0, "text": ["nice", "oh"]})}
    systems = assemble(t["dialogues"], t["controls"], t["candidates"], t["retrieved_samples"], samples)
    assert list(systems) == [BASE, "trs", "transfertransfo"]
    assert list(systems["transfertransfo"]["text"]) == ["oh", "nice"]  # aligned on the example ids
    rank0 = t["candidates"][t["candidates"]["rank"] == 0].set_index("example_id")
    assert list(systems["trs"]["words"]) == [list(rank0.loc[i, "words"]) for i in ["c1:1", "c2:1"]]
    table, metrics = score_systems(systems, stand_in_scorers())
    results = compare(table, metrics, resamples=50)
    assert set(results["vs_diffusemp"]) == {"trs", "transfertransfo"}
    assert set(results["vs_diffusemp"]["trs"]) == set(COMPARED)
    d = results["vs_diffusemp"]["trs"]["bertscore_f1_minilm"]["delta"]
    assert d == pytest.approx(metrics["trs"]["bertscore_f1_minilm"] - metrics[BASE]["bertscore_f1_minilm"])


def test_the_tables_show_each_difference_with_its_interval():
    systems = {n: {"bertscore_f1_minilm": 0.5, "fluency_ppl_smollm2": 100.0, "acc_cm": 90.0, "acc_it": 70.0,
                   "f1_sf": 80.0} for n in (BASE, "trs", "transfertransfo", "transfertransfo_controls")}
    vs = {n: {k: {"delta": -1.0, "low": -2.0, "high": -0.5} for k in COMPARED} for n in systems if n != BASE}
    text = scores_table({"systems": systems, "vs_diffusemp": vs})
    assert "| paper: TRS | 0.5717 |" in text
    assert "| ours: TRS (`trs`) | 0.5000 (-1.0000 [-2.0000, -0.5000]) | n/a | 100.00 (-1.00 [-2.00, -0.50]) |" in text
    steer = {"requests": {"cm_er": {"adherence": 90.0, "base_rate": 50.0, "low": 30.0, "high": 50.0,
                                    "fluency_ppl": 120.0}}}
    row = steering_table(steer, {**steer, "system": "transfertransfo_controls"}).splitlines()[-1]
    assert row == "| `cm_er` | 90.0 (+40.0 [+30.0, +50.0]) | 120.0 | 90.0 (+40.0 [+30.0, +50.0]) | 120.0 |"


def test_the_readme_shows_the_committed_baselines_figures():
    """README's Table 2 rows of the baselines and its speed table are the ones stage report_baselines renders from
    the committed metrics (copied there from docs/baselines.md, which `make baselines` regenerates)."""
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    assert scores_table(read_json(root / "metrics/baselines.json")) in readme
    assert speed_table(read_json(root / "metrics/bench_baselines.json"), training_minutes(root / "metrics/timings")) \
        in readme
