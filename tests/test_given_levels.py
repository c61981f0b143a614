"""Controls that steer: freed levels (inputs.free_levels), their mask, condition dropout, classifier-free guidance."""
import dataclasses

import pytest
import torch

from pipeline.decoder import Decoder, SteeredSample
from pipeline.diffusion.config import SampleConfig, TrainConfig
from pipeline.diffusion.inputs import Role, collate, encode_example, free_levels, stack
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.model import build_model
from pipeline.diffusion.sampler import guide, sample
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.trainer import LevelDropout
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from test_diffusion_core import ROWS
from test_diffusion_mask import CFG, ROW, drawn, encode
from test_diffusion_masked import CFG as MASKED


@pytest.fixture(scope="module")
def vocab():
    return Vocab.build([ROW], CFG)


# Positions of the drawing (tests/test_diffusion_mask.py): 0-1 context, 2 SEP, 3-5 CM, 6-7 IT, 8-10 SF, 11 SEP,
# 12-15 response subwords, 16 END.
@pytest.mark.parametrize("free, gone", [(("sf",), [8, 9, 10]), (("it",), [6, 7]), (("cm",), [3, 4, 5]),
                                        (("it", "sf"), [6, 7, 8, 9, 10]), (("cm", "it", "sf"), list(range(3, 11)))])
def test_a_freed_level_loses_its_tokens_and_the_structure_it_carried(vocab, free, gone):
    full = encode(vocab)
    ex = free_levels(full, free)
    keep = [i for i in range(17) if i not in gone]
    assert ex.ids == [full.ids[i] for i in keep] and ex.target == [full.target[i] for i in keep]
    resp = [i for i, r in enumerate(ex.role) if r == Role.RESPONSE]
    assert len(resp) == 5  # the response keeps its positions (the length comes from the control source)
    assert [ex.sent[i] for i in resp] == ([-1] * 5 if "it" in free else [0, 0, 0, 1, -1])
    assert [ex.word[i] for i in resp] == ([-1] * 5 if "sf" in free else [0, 0, 1, 2, -1])
    mask = control_range_mask(collate([ex]), CFG.mask, CFG.signals)[0, 0]
    expect = drawn()[keep][:, keep]
    if free == ("it",):  # SF tokens keep their words; the response reads them exactly as before
        assert torch.equal(mask, expect)
    if free == ("sf",):  # IT still reaches its sentence's subwords, nothing reaches a word
        assert torch.equal(mask, expect)
    # a response position reads the context, every response position, CM and the given levels' own tokens
    assert mask[resp][:, resp].all() and mask[resp][:, :3].all()
    if set(free) == {"it", "sf"}:  # ... and nothing else: no IT or SF token is left
        keys = [i for i, r in enumerate(ex.role) if r in (Role.CONTEXT, Role.SEP, Role.CM, Role.RESPONSE)]
        assert keys == list(range(len(ex))) and mask[resp][:, keys].all()


def test_freeing_is_what_encoding_with_given_gives(vocab):
    given = encode_example(["i am very happy today"], ROW, vocab, CFG, ROW["subword_ids"], given=["cm", "it"])
    assert given == free_levels(encode(vocab), ["sf"])


def test_level_dropout_draws_the_subsets_at_their_rates_and_repeats_per_step(vocab):
    examples = [encode(vocab)] * 4000
    dropout = LevelDropout([("cm", "it", "sf"), ("cm",), ()], [0.5, 0.3, 0.2], CFG.signals, seed=3)
    out = dropout(examples, step=7)
    lengths = [len(e) for e in out]
    shares = [lengths.count(n) / len(out) for n in (17, 12, 9)]  # all given; CM only (-5); none (-8)
    assert shares == pytest.approx([0.5, 0.3, 0.2], abs=0.03)
    assert [len(e) for e in dropout(examples, step=7)] == lengths  # a resumed run draws the same
    assert [len(e) for e in dropout(examples, step=8)] != lengths
    assert LevelDropout([], [], CFG.signals, 3)(examples[:5], 0) == examples[:5]


def test_train_config_checks_the_dropout_subsets():
    TrainConfig(steps=1, batch_size=1, given_levels=(("sf", "cm"),), given_weights=(1.0,))
    assert TrainConfig(steps=1, batch_size=1, given_levels=(("sf", "cm"),), given_weights=(1.0,)).given_levels == \
        (("cm", "sf"),)
    for levels, weights in [((("cm", "xx"),), (1.0,)), ((("cm",),), (1.0, 2.0)), ((("cm",),), (-1.0,)),
                            ((("cm",),), (0.0,))]:
        with pytest.raises(PipelineError, match="given_levels"):
            TrainConfig(steps=1, batch_size=1, given_levels=levels, given_weights=weights)


def test_guidance_formula_on_hand_made_logits():
    given = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))
    free = torch.log(torch.tensor([[0.25, 0.5, 0.25]]))
    # w = 2: log p = 2 log p_given - log p_free + c -> p proportional to (0.25 / 0.25, 0.0625 / 0.5, 0.0625 / 0.25)
    expect = torch.tensor([1.0, 0.125, 0.25])
    assert torch.allclose(guide(given, free, 2.0).exp(), (expect / expect.sum())[None])
    assert torch.allclose(guide(given, free, 1.0), given)  # w = 1: the conditional model
    assert torch.allclose(guide(given, free, 0.0), free)  # w = 0: the free model


def masked_setup():
    mvocab = Vocab.build(ROWS, MASKED)
    torch.manual_seed(0)
    model = build_model(MASKED, mvocab).eval()
    rows = [encode_example(["hello"], r, mvocab, MASKED) for r in ROWS]
    return model, collate(rows), collate([free_levels(e, MASKED.signals) for e in rows])


def test_guided_sampler_reads_the_free_rows_in_the_same_forward(monkeypatch):
    model, batch, free = masked_setup()
    plain = sample(model, batch, Schedule(MASKED.T), steps=4)
    # guidance 1 is the plain sampler; any w with the free rows equal to the given ones changes nothing either
    assert sample(model, batch, Schedule(MASKED.T), steps=4, guidance=1.0, free=free) == plain
    assert sample(model, batch, Schedule(MASKED.T), steps=4, guidance=3.0, free=batch) == plain
    # w = 0 is the freed rows' model alone: the freed rows must be read position for position (greedy and drawn)
    assert sample(model, batch, Schedule(MASKED.T), steps=4, guidance=0.0, free=free) == \
        sample(model, free, Schedule(MASKED.T), steps=4)
    g = lambda seed: [torch.Generator().manual_seed(seed), torch.Generator().manual_seed(seed + 1)]
    two, two_free = stack(batch, batch), stack(free, free)  # two stacked draws
    assert sample(model, two, Schedule(MASKED.T), steps=4, temperature=1.0, generator=g(5), guidance=0.0,
                  free=two_free) == sample(model, two_free, Schedule(MASKED.T), steps=4, temperature=1.0,
                                           generator=g(5))
    seen, forward = [], model.forward
    monkeypatch.setattr(model, "forward", lambda ids, attn: seen.append(ids.clone()) or forward(ids, attn))
    guided = sample(model, batch, Schedule(MASKED.T), steps=4, guidance=3.0, guidance_start=0.5, free=free)
    B = len(batch)
    assert [len(ids) for ids in seen] == [B, B, 2 * B, 2 * B]  # unguided for the first half of the steps
    last, both = seen[-1], stack(batch, free)
    assert torch.equal(last[B:][both.is_response[B:]], last[:B][both.is_response[:B]])  # the same response tokens
    assert len(guided) == B
    with pytest.raises(PipelineError, match="freed"):
        sample(model, batch, Schedule(MASKED.T), steps=4, guidance=3.0)


def test_stack_pads_both_batches_like_collate(vocab):
    a, b = encode(vocab), free_levels(encode(vocab), ["cm", "it", "sf"])
    stacked, collated = stack(collate([a]), collate([b])), collate([a, b])
    assert all(torch.equal(getattr(stacked, f.name), getattr(collated, f.name)) for f in dataclasses.fields(collated))


def test_the_decoder_draws_rows_with_a_freed_level_at_the_steered_temperature():
    """pipeline.decoder: rows whose `given` leaves a level out are drawn apart at steered_sample.temperature; rows
    that give every level are drawn as without the setting."""
    mvocab = Vocab.build(ROWS, MASKED)
    torch.manual_seed(0)
    model = build_model(MASKED, mvocab).eval()
    full = [{**r, "context": ["hello"]} for r in ROWS]
    freed = [{**r, "given": ["cm"]} for r in full]
    cfg = SampleConfig(split="test", subset=None, steps=4, clamp=False, temperature=1.0, solver="ancestral",
                       edit_strength=0.5, num_samples=4, rerank="none", candidates=None, edit_candidates=None,
                       batch_size=8, bf16=False, guidance=2.0)
    plain, steered = Decoder(model, mvocab, cfg), Decoder(model, mvocab, cfg, steered=SteeredSample(temperature=0.0))
    assert steered.steered_rows(full + freed) == [False] * len(full) + [True] * len(freed)
    assert steered.draw(full, seed=3)[0] == plain.draw(full, seed=3)[0]  # nothing freed: the setting changes nothing
    texts, _ = steered.draw(full + freed, seed=3)
    assert [column[:len(full)] for column in texts] == plain.draw(full, seed=3)[0]
    greedy = plain.with_settings(temperature=0.0).draw(freed, seed=3)[0]
    assert [column[len(full):] for column in texts] == greedy  # the freed rows: greedy, as asked
    assert all(draw == greedy[0] for draw in greedy)  # temperature 0: every draw the same
    with pytest.raises(PipelineError, match="steered_sample.temperature"):
        Decoder(model, mvocab, cfg, steered=SteeredSample(temperature=-1.0))
