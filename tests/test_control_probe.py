"""The control probes of pipeline.control_probe on hand-made cases: the random CM, the four agreements of the CM probe
with a decoder that follows its CM and one that ignores it, and the attention mass of an encoder made to attend
evenly (its mass is then exactly the share of visible keys)."""
import numpy as np
import pytest
import torch

from pipeline.bootstrap import interval
from pipeline.control_probe import attention_mass, cm_of, cm_probe, random_cm
from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import Role, encode_rows
from pipeline.diffusion.model import build_model
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from test_diffusion_core import ROWS

A, B, C = (True, False, False), (False, False, True), (True, True, False)


def rows_of(cms):
    return [{"example_id": f"e{i}", "context": ["hi"], "cm_er": er, "cm_ip": ip, "cm_ex": ex}
            for i, (er, ip, ex) in enumerate(cms)]


def test_random_cm_never_gives_a_row_its_own_cm_and_follows_the_pool_frequencies():
    pool = np.array([A] * 9 + [B])
    given = cm_of(random_cm(rows_of([A] * 50), pool, seed=0))
    assert (given == B).all()  # A's only other combination in the pool
    given = cm_of(random_cm(rows_of([C] * 2000), pool, seed=0))  # C is not in the pool: A 9 times in 10
    assert abs((given == A).all(1).mean() - 0.9) < 0.03 and ((given == A) | (given == B)).all(1).all()
    assert np.array_equal(cm_of(random_cm(rows_of([C] * 30), pool, 5)), cm_of(random_cm(rows_of([C] * 30), pool, 5)))
    with pytest.raises(PipelineError, match="one CM combination"):
        random_cm(rows_of([A]), np.array([A, A]), 0)


def test_interval_of_a_constant_is_the_constant():
    assert interval(np.full(7, 0.25), 100, 0) == {"mean": 0.25, "low": 0.25, "high": 0.25}


def encode(cm):  # a text that spells a CM, and its tagger
    return " ".join("1" if v else "0" for v in cm)


def tag(contexts, texts):
    return np.array([[c == "1" for c in t.split()] for t in texts], dtype=bool)


def test_a_decoder_that_follows_its_cm_agrees_with_the_random_cm_and_one_that_ignores_it_at_chance():
    rows = rows_of([A, A, B, C])
    pool = np.array([A, B, C])  # each row gets one of the two others, evenly
    follower = lambda rs, seed, group: [(i, encode(cm_of([r])[0])) for i, r in enumerate(rs)]
    out = cm_probe(follower, rows, pool, 1, 0, tag, 200)
    given = cm_of(random_cm(rows, pool, 0))
    chance = 100 * (given == cm_of(rows)).mean()  # the true-CM outputs against the random CM
    assert (out["examples"], out["true"], out["follow"], out["outputs_changed"]) == (4, 100.0, 100.0, 4)
    assert out["chance"] == out["kept"] == pytest.approx(chance, abs=0.01)
    assert out["follow_minus_chance"]["mean"] == pytest.approx(100 - chance, abs=0.01)

    ignorer = lambda rs, seed, group: [(i, encode(B)) for i in range(len(rs))]  # always B, whatever it is given
    out = cm_probe(ignorer, rows, pool, 1, 0, tag, 200)
    assert out["follow"] == out["chance"] and out["follow_minus_chance"] == {"mean": 0.0, "low": 0.0, "high": 0.0}
    assert out["true"] == out["kept"] == pytest.approx(100 * (cm_of(rows) == B).mean(), abs=0.01)
    assert out["outputs_changed"] == 0


def test_an_encoder_that_attends_evenly_puts_on_each_role_its_share_of_the_visible_keys():
    cfg = ModelConfig(family="masked", init="minilm", width=384, heads=12, ffn=1536, layers=1, dropout=0.0,
                      max_len=64, max_context=16)
    vocab = Vocab.build(ROWS, cfg)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, pretrained=False).eval()
    query = model.encoder.encoder.layer[0].attention.self.query
    torch.nn.init.zeros_(query.weight), torch.nn.init.zeros_(query.bias)  # every score 0: softmax spreads evenly
    examples = encode_rows([{**r, "context": ["hello"]} for r in ROWS], vocab, cfg, gold=False)
    out = attention_mass(model, examples, batch_size=3)
    assert out["layers"][0] == pytest.approx(out["keys"], abs=1e-3)
    assert sum(out["keys"].values()) == pytest.approx(1, abs=1e-3)

    # By hand for the first row ("that is great news !": 5 words, 5 subwords): a response query sees the context and
    # both separators, the 3 CM tokens, its sentence's IT token, its word's SF token, and the 6 response tokens (END
    # included); END has no IT or SF token.
    n_ctx = sum(r == Role.CONTEXT or r == Role.SEP for r in examples[0].role)
    subword = {"context": n_ctx, "cm": 3, "it": 1, "sf": 1, "response": 6}
    end = {**subword, "it": 0, "sf": 0}
    one = attention_mass(model, examples[:1])["keys"]
    for role in subword:
        expected = (5 * subword[role] / sum(subword.values()) + end[role] / sum(end.values())) / 6
        assert one[role] == pytest.approx(expected, abs=1e-4)


def test_the_attention_probe_needs_the_minilm_encoder():
    cfg = ModelConfig(family="masked", width=64, layers=1, heads=4, ffn=128, dropout=0.0, max_len=64, max_context=16)
    with pytest.raises(PipelineError, match="init minilm"):
        attention_mass(build_model(cfg, Vocab.build(ROWS, cfg)), [])
