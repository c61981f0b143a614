"""The masked (absorbing-state) family: the forward process, the loss, the unmasking schedule and sampler."""
import dataclasses
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import Role, collate, encode_example, encode_rows
from pipeline.diffusion.losses import hide, training_loss
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.model import MaskedDiffusEmpModel, build_model
from pipeline.diffusion.sampler import decode, sample, still_hidden
from pipeline.diffusion.schedule import Schedule, noise
from pipeline.diffusion.vocab import MASK_ID, Vocab
from pipeline.errors import PipelineError
from test_diffusion_core import ROWS

CFG = ModelConfig(family="masked", width=64, layers=2, heads=4, ffn=128, dropout=0.0, max_len=64, max_context=16)


@pytest.fixture(scope="module")
def vocab():
    return Vocab.build(ROWS, CFG)


def gold_batch(vocab):
    return collate([encode_example(["hello"], r, vocab, CFG, r["subword_ids"]) for r in ROWS])


def test_hide_touches_only_response_positions_at_the_given_rate(vocab):
    batch = gold_batch(vocab)
    g = torch.Generator().manual_seed(0)
    ids, hidden = hide(batch, torch.zeros(len(batch)), MASK_ID, g)
    assert not hidden.any() and torch.equal(ids, batch.ids)
    ids, hidden = hide(batch, torch.ones(len(batch)), MASK_ID, g)
    assert torch.equal(hidden, batch.is_response) and (ids[hidden] == MASK_ID).all()
    assert torch.equal(ids[~hidden], batch.ids[~hidden])  # context, separators, controls, padding: untouched
    big = collate([encode_example(["hello"], ROWS[3], vocab, CFG, ROWS[3]["subword_ids"])] * 400)
    _, hidden = hide(big, torch.full((400,), 0.3), MASK_ID, g)
    assert abs(hidden.sum().item() / big.is_response.sum().item() - 0.3) < 0.03


def test_loss_is_the_cross_entropy_at_the_hidden_positions(vocab):
    """Recompute the loss by hand from the same draws: t / T is the hiding rate."""
    torch.manual_seed(0)
    model, batch, schedule = build_model(CFG, vocab), gold_batch(vocab), Schedule(CFG.T)
    assert isinstance(model, MaskedDiffusEmpModel)
    t = torch.tensor([500, 1000, 1500, 2000])
    loss, terms = training_loss(model.eval(), batch, schedule, t=t, generator=torch.Generator().manual_seed(3))
    ids, hidden = hide(batch, t / CFG.T, MASK_ID, torch.Generator().manual_seed(3))
    logits = model.logits(model(ids, control_range_mask(batch, CFG.mask, CFG.signals))[hidden])
    expected = F.cross_entropy(logits, batch.target[hidden]).detach()
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-6)
    assert set(terms) == {"ce", "loss", "accuracy"}
    assert hidden[3].sum() == batch.is_response[3].sum()  # t = T hides every response token


def test_unmasking_schedule_is_cosine_and_ends_with_nothing_hidden():
    n = torch.tensor([10, 7, 1])
    # floor(n * cos(pi/2 * k/4)) for k = 1..3, then 0
    assert [still_hidden(n, k, 4).tolist() for k in range(1, 5)] == [
        [math.floor(x * math.cos(math.pi / 2 * k / 4)) for x in (10, 7, 1)] for k in (1, 2, 3)] + [[0, 0, 0]]
    assert [still_hidden(n, k, 4).tolist() for k in range(1, 4)] == [[9, 6, 0], [7, 4, 0], [3, 2, 0]]


def test_sampler_reveals_the_scheduled_count_per_step_and_keeps_what_it_revealed(vocab, monkeypatch):
    """Spy on the model's input at every step: hidden counts follow still_hidden, revealed tokens never change,
    non-response positions are never touched."""
    torch.manual_seed(0)
    model = build_model(CFG, vocab).eval()
    batch = collate([encode_example(["hello"], r, vocab, CFG) for r in ROWS])
    seen, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda ids, attn: seen.append(ids.clone()) or forward(ids, attn))
    out = sample(model, batch, Schedule(CFG.T), steps=3)
    n = batch.is_response.sum(1)
    assert len(seen) == 3 and (seen[0][batch.is_response] == MASK_ID).all()
    for k, ids in enumerate(seen[1:], start=1):
        assert torch.equal((ids == MASK_ID).sum(1), still_hidden(n, k, 3))
        assert torch.equal(ids[~batch.is_response], seen[0][~batch.is_response])
        was = seen[k - 1] != MASK_ID
        assert torch.equal(ids[was], seen[k - 1][was])
    assert len(out) == len(ROWS) and all(MASK_ID not in o for o in out)


def test_noise_gives_each_stacked_draw_its_own_generators_numbers():
    g = lambda seed: torch.Generator().manual_seed(seed)
    both = noise((4, 3), [g(1), g(2)], "cpu", normal=False)  # two draws of two rows
    assert torch.equal(both, torch.cat([torch.rand((2, 3), generator=g(1)), torch.rand((2, 3), generator=g(2))]))
    assert torch.equal(noise((4, 3), g(1), "cpu", normal=True), torch.randn((4, 3), generator=g(1)))
    uneven = noise((5, 2), [g(1), g(2)], "cpu", normal=False, parts=[1, 4])
    assert torch.equal(uneven[1:], torch.rand((4, 2), generator=g(2)))
    with pytest.raises(ValueError, match="equal"):
        noise((5, 2), [g(1), g(2)], "cpu", normal=False)


@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_stacked_draws_are_the_draws_sampled_alone(vocab, strength):
    """A batch holding two draws of the same rows (draw-major, one generator each) gives each draw what it gives
    alone, also when hiding part of a candidate gives the draws different numbers of positions to fill."""
    torch.manual_seed(0)
    model = build_model(CFG, vocab).eval()
    batch = gold_batch(vocab)
    stacked = collate([encode_example(["hello"], r, vocab, CFG, r["subword_ids"]) for r in ROWS * 2])
    g = lambda seed: torch.Generator().manual_seed(seed)
    both = sample(model, stacked, Schedule(CFG.T), steps=4, generator=[g(1), g(2)], temperature=1.0, strength=strength)
    alone = [sample(model, batch, Schedule(CFG.T), steps=4, generator=g(s), temperature=1.0, strength=strength)
             for s in (1, 2)]
    assert both == alone[0] + alone[1] and alone[0] != alone[1]


def test_a_row_runs_the_model_only_at_the_steps_where_it_reveals_something(vocab, monkeypatch):
    """With more steps than positions most steps reveal nothing in a row: the model then sees only the rows that do,
    and each row's output is the one it gets when sampled alone."""
    torch.manual_seed(0)
    model = build_model(CFG, vocab).eval()
    batch = collate([encode_example(["hello"], r, vocab, CFG) for r in ROWS])
    rows_seen, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda ids, attn: rows_seen.append(len(ids)) or forward(ids, attn))
    steps = 12
    out = sample(model, batch, Schedule(CFG.T), steps=steps)
    n = batch.is_response.sum(1)
    left = [n] + [still_hidden(n, k, steps) for k in range(1, steps + 1)]
    active = [int((left[k - 1] > left[k]).sum()) for k in range(1, steps + 1)]  # rows revealing something at step k
    assert int(n.max()) < steps and rows_seen == [a for a in active if a] and sum(rows_seen) < steps * len(ROWS)
    monkeypatch.setattr(model, "forward", forward)
    for i in range(len(ROWS)):
        assert sample(model, collate([encode_example(["hello"], ROWS[i], vocab, CFG)]), Schedule(CFG.T),
                      steps=steps) == [out[i]]


def test_bf16_sampling_runs_the_model_in_bfloat16(vocab, monkeypatch):
    torch.manual_seed(0)
    model = build_model(CFG, vocab).eval()
    batch = collate([encode_example(["hello"], r, vocab, CFG) for r in ROWS])
    dtypes, logits = [], model.logits
    monkeypatch.setattr(model, "logits", lambda h: dtypes.append(logits(h).dtype) or logits(h))
    out = sample(model, batch, Schedule(CFG.T), steps=3, temperature=1.0, generator=torch.Generator().manual_seed(0),
                 bf16=True)
    assert set(dtypes) == {torch.bfloat16} and len(out) == len(ROWS) and all(MASK_ID not in o for o in out)


def test_tiny_masked_model_overfits_and_regenerates_from_controls(vocab):
    torch.set_num_threads(1)
    torch.manual_seed(0)
    train = gold_batch(vocab)
    test = collate([encode_example(["hello"], r, vocab, CFG) for r in ROWS])  # no response: controls only
    model, schedule = build_model(CFG, vocab), Schedule(CFG.T)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(300):
        loss, terms = training_loss(model, train, schedule, generator=g)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(terms["ce"]) < 0.1
    for steps in (None, 2):  # one token per step, and two steps
        out = sample(model, test, schedule, steps=steps)
        assert out == [r["subword_ids"] for r in ROWS], (steps, [decode(o) for o in out])
    drawn = sample(model, test, schedule, steps=4, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert drawn == sample(model, test, schedule, steps=4, temperature=1.0, generator=torch.Generator().manual_seed(1))
    assert decode(out[2]) == "when do you leave?"


def test_a_model_without_any_signal_trains_and_samples(vocab):
    """no_controls (`model.signals: []`, the DiffuSeq-style baseline): context and response only, end to end."""
    from pipeline.controls import control_sequence

    cfg = ModelConfig.from_dict({**CFG.to_dict(), "signals": []})  # as params.yaml's `signals: []` reads
    assert cfg.signals == () and control_sequence(ROWS[0], cfg.signals) == ""
    train = collate([encode_example(["hello"], r, vocab, cfg, r["subword_ids"]) for r in ROWS])
    assert set(train.role.unique().tolist()) == {Role.CONTEXT, Role.SEP, Role.RESPONSE, Role.PAD}
    torch.manual_seed(0)
    model, schedule = build_model(cfg, vocab), Schedule(cfg.T)
    loss, _ = training_loss(model, train, schedule, generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss)
    test = collate([encode_example(["hello"], r, vocab, cfg) for r in ROWS])
    out = sample(model, test, schedule, steps=2)
    assert len(out) == len(ROWS) and all(MASK_ID not in o for o in out)


def test_overlap_and_mbr_by_hand():
    from pipeline.rerank import mbr_pick, overlap

    # unigrams {a, b, c} vs {a, b, d}: F1 2/3; bigrams {ab, bc} vs {ab, bd}: F1 1/2
    assert overlap("a b c", "A B d") == pytest.approx((2 / 3 + 1 / 2) / 2)
    assert overlap("", "") == 1.0 and overlap("a", "") == 0.0
    assert mbr_pick(["x y z", "a b c", "a b d"]) == 1  # ties between 1 and 2 go to the first
    assert mbr_pick(["only"]) == 0


def test_fluency_pick_by_hand():
    from pipeline.rerank import fluency_pick

    nan = float("nan")
    nll = np.array([[1.0, nan, 2.0, nan],  # draws x rows
                    [0.5, nan, 2.0, nan],
                    [0.5, 3.0, nan, nan]])
    # lowest NLL, the first draw on ties; an empty draw (NaN) loses to any text, and wins only when all are empty
    assert fluency_pick(nll).tolist() == [1, 2, 0, 0]


def test_controls_pick_by_hand():
    from pipeline.rerank import controls_pick

    nan = float("nan")
    agreement = np.array([[1.0, 0.5, 0.5, 0.0],  # draws x rows
                          [1.0, 1.0, 0.5, 0.0],
                          [0.5, 1.0, 0.5, 0.0]])
    nll = np.array([[2.0, 1.0, nan, nan],
                    [1.0, 3.0, 2.0, nan],
                    [0.1, 2.0, 2.0, nan]])
    # the best agreement first (row 0: draws 0 and 1, then the lower NLL; row 1: draws 1 and 2, then the lower NLL),
    # then the lowest NLL with an empty draw last (row 2), the first draw on full ties (row 2 between 1 and 2; row 3)
    assert controls_pick(agreement, nll).tolist() == [1, 2, 1, 0]


def test_relevance_pick_by_hand():
    from pipeline.rerank import relevance_pick

    nan = float("nan")
    nll = np.array([[1.0, 1.0, nan, nan, 2.0],  # draws x rows
                    [2.0, 1.0, 2.0, nan, 2.0],
                    [3.0, 2.0, 1.0, nan, 2.0]])
    relevance = np.array([[0.1, 0.2, 0.9, 0.5, 0.3],
                          [0.5, 0.6, 0.1, 0.5, 0.3],
                          [0.9, 0.1, 0.2, 0.5, 0.5]])
    # row 0: z(-nll) = (1.22, 0, -1.22) and z(relevance) = (-1.22, 0, 1.22) cancel: the first draw on the tie;
    # row 1: (0.71, 0.71, -1.41) + (-0.46, 1.39, -0.93): draw 1; row 2: the empty draw is out, however relevant;
    # row 3: every draw empty: the first; row 4: no spread in fluency, so relevance decides
    assert relevance_pick(nll, relevance).tolist() == [0, 1, 2, 0, 2]
    assert relevance_pick(nll, relevance, weight=0.0).tolist() == [0, 0, 2, 0, 0]  # weight 0: the most fluent


def test_the_draws_of_an_examples_candidates_compete_in_one_rerank():
    from pipeline.rerank import Judges, pooled, rerank

    # pooled: [draws, rows] -> [group x draws, rows / group], option o = draw o % draws of the group's row o // draws
    m = np.array([[0, 1, 2, 3], [10, 11, 12, 13]])  # draw d of row i = 10 d + i
    assert pooled(m, 2).tolist() == [[0, 2], [10, 12], [1, 3], [11, 13]]
    assert pooled(m, 1).tolist() == m.tolist()
    rows = [{"example_id": e, "rank": r} for e in ("a", "b") for r in (0, 1)]
    draws = [["aaaa", "aa", "bbb", "bbb"],  # draw 0 of rows a0, a1, b0, b1
             ["aaa", "aaaaa", "bbbb", "bbb"]]  # draw 1
    judges = Judges(fluency_nll=lambda texts: np.array([float(len(t)) for t in texts]))
    # fluency (the shortest text): a -> row 1 draw 0 ("aa"); b -> a tie of three "bbb", the first option: row 2 draw 0
    assert rerank(draws, rows, "fluency", judges, group=2) == [(1, 0), (2, 0)]
    assert rerank(draws, rows, "fluency", judges) == [(0, 1), (1, 0), (2, 0), (3, 0)]  # each row alone
    assert rerank(draws, rows, "none", judges, group=2) == [(0, 0), (2, 0)]  # the first draw of the first candidate
    assert rerank([draws[0]], rows, "fluency", judges, group=2) == [(1, 0), (2, 0)]  # one draw: candidates still compete
    with pytest.raises(PipelineError, match="groups of 3"):
        rerank(draws, rows, "fluency", judges, group=3)
    # a row whose response was cut (whole False) loses to any whole row of its group; a group with none whole keeps all
    whole = np.array([True, False, False, False])
    assert rerank(draws, rows, "fluency", judges, group=2, whole=whole) == [(0, 1), (2, 0)]  # a: "aaa", not "aa"
    assert rerank(draws, rows, "none", judges, group=2, whole=[False, True, True, True]) == [(1, 0), (2, 0)]
    mbr = rerank([["x y", "x y", "q", "q"], ["x y", "x y z", "q", "q"]], rows, "mbr", judges, group=2,
                 whole=[False, True, True, True])  # a: only row 1's draws compete
    assert mbr[0][0] == 1


def test_complete_says_which_responses_fit_max_len(vocab):
    from pipeline.diffusion.generate import complete

    rows = [dict(r, context=["hello"]) for r in ROWS]
    n_sub = [len(r["subword_word"]) for r in rows]
    fits = lambda cfg: complete(encode_rows(rows, vocab, cfg, gold=False), rows)
    assert fits(CFG).all()
    # controls + response + separators of the longest row: 2 SEP + 3 CM + its sentences + words + subwords + END
    longest = max(range(len(rows)), key=lambda i: n_sub[i])
    r = rows[longest]
    need = 2 + 3 + len(r["intents"]) + len(r["words"]) + n_sub[longest] + 1
    assert fits(dataclasses.replace(CFG, max_len=need))[longest]
    assert not fits(dataclasses.replace(CFG, max_len=need - 1))[longest]


def test_agreement_by_hand():
    from pipeline.judges import agreement

    cm_ok = np.array([[True, True, True], [True, False, False], [False, False, False]])
    it = np.array([[2, 2], [1, 3], [0, 0]])  # (matched, counted) intent positions
    # (3/3 + 2/2) / 2, (1/3 + 1/3) / 2, (0 + 1) / 2: no intent position counted agrees
    assert agreement(cm_ok, it).tolist() == pytest.approx([1.0, 1 / 3, 0.5])


def test_control_agreement_retags_each_text_against_its_own_row():
    from pipeline.judges import ControlAgreement

    class FakeTaggers:  # P(present) = 0.9 for every mechanism named in the text; intents: one per "." sentence
        def mechanisms(self, contexts, texts):
            assert contexts == ["a b", "c"]  # each row's context, joined as the taggers read it
            return np.array([[0.9 if m in t else 0.1 for m in ("er", "ip", "ex")] for t in texts])

        def intents(self, texts, segments):
            return [s["intents"] for s in segments]

    segment = lambda texts: [{"intents": [w.strip() for w in t.split(".") if w.strip()]} for t in texts]
    rows = [{"context": ["a", "b"], "cm_er": True, "cm_ip": False, "cm_ex": False, "intents": ["x", "y"]},
            {"context": ["c"], "cm_er": False, "cm_ip": True, "cm_ex": True, "intents": ["x"]}]
    judge = ControlAgreement(FakeTaggers(), cm_threshold=0.5, segment=segment)
    cm_ok, it = judge.check(rows, ["er ex. y", "ip. x"])
    assert cm_ok.tolist() == [[True, True, False], [True, True, False]]
    assert it.tolist() == [[1, 2], [0, 2]]  # (er ex, y) vs (x, y); (ip, x) vs (x,): both positions count
    assert judge(rows, ["er ex. y", "ip. x"]).tolist() == pytest.approx([(2 / 3 + 1 / 2) / 2, (2 / 3 + 0) / 2])
    # a level the row does not give constrains nothing (a hand-set CM frees the candidate's intents, and back)
    freed = [{**rows[0], "given": ["cm"]}, {**rows[1], "given": ["it"]}]
    cm_ok, it = judge.check(freed, ["er ex. y", "ip. x"])
    assert cm_ok.tolist() == [[True, True, False], [True, True, True]] and it.tolist() == [[0, 0], [0, 2]]


def test_masked_edit_keeps_the_candidate_outside_the_hidden_positions(vocab, monkeypatch):
    torch.manual_seed(0)
    model = build_model(CFG, vocab).eval()
    batch = gold_batch(vocab)  # the candidate's tokens at the response positions
    seen, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda ids, attn: seen.append(ids.clone()) or forward(ids, attn))
    sample(model, batch, Schedule(CFG.T), steps=2, generator=torch.Generator().manual_seed(0), strength=0.5)
    first = seen[0]
    shown = batch.is_response & (first != MASK_ID)
    assert torch.equal(first[shown], batch.ids[shown]) and 0 < int((first == MASK_ID).sum()) < int(batch.is_response.sum())


def test_minilm_init_reuses_the_pretrained_encoder_and_round_trips(vocab, tmp_path):
    from transformers import BertModel

    from pipeline.diffusion.checkpoint import load_model, save_model
    from pipeline.models import minilm_path

    cfg = ModelConfig(**{**CFG.to_dict(), "init": "minilm", "width": 384, "heads": 12, "ffn": 1536, "layers": 2})
    torch.manual_seed(0)
    model = build_model(cfg, vocab).eval()
    original = BertModel.from_pretrained(minilm_path(), add_pooling_layer=False)
    assert len(model.encoder.encoder.layer) == 2 and model.embedding.num_embeddings == vocab.size
    assert torch.equal(model.embedding.weight[:vocab.wordpiece_size], original.embeddings.word_embeddings.weight)
    assert torch.equal(model.encoder.encoder.layer[1].output.dense.weight, original.encoder.layer[1].output.dense.weight)
    save_model(tmp_path / "m", model.state_dict(), cfg, vocab)
    loaded, _ = load_model(tmp_path / "m")
    batch = gold_batch(vocab)
    attn = control_range_mask(batch, cfg.mask, cfg.signals)
    assert torch.allclose(loaded(batch.ids, attn), model(batch.ids, attn))
    with pytest.raises(Exception, match="init=minilm needs"):
        ModelConfig(family="masked", init="minilm", width=256)
