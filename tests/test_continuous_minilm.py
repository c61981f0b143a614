"""The continuous family on the pretrained MiniLM encoder (model.ContinuousMiniLMModel): its frozen, standardised
diffusion space, an encoder that starts as the pretrained one, x0 as the expected embedding under the cross-entropy
head, the loss terms, and a save / load round trip."""
import dataclasses

import pytest
import torch
import torch.nn.functional as F

from pipeline.diffusion.checkpoint import load_model, save_model
from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import collate, encode_example
from pipeline.diffusion.losses import training_loss
from pipeline.diffusion.mask import control_range_mask
from pipeline.diffusion.model import ContinuousMiniLMModel, build_model
from pipeline.diffusion.sampler import sample
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from test_diffusion_core import ROWS

CFG = ModelConfig(family="continuous", init="minilm", emb_dim=384, width=384, heads=12, ffn=1536, layers=1,
                  dropout=0.0, max_len=64, max_context=16, T=100, noise_factor=2.0, rounding="none")


@pytest.fixture(scope="module")
def setup():
    vocab = Vocab.build(ROWS, CFG)
    torch.manual_seed(0)
    model = build_model(CFG, vocab).eval()
    batch = collate([encode_example(["hello"], r, vocab, CFG, r["subword_ids"]) for r in ROWS])
    return vocab, model, batch


def test_the_space_is_minilms_embeddings_standardised_scaled_and_frozen(setup):
    vocab, model, _ = setup
    assert isinstance(model, ContinuousMiniLMModel)
    ids = torch.arange(vocab.wordpiece_size)
    space = model.embed(ids[None])[0]  # [V, E]
    assert space.mean(0).abs().max() < 1e-4
    assert torch.allclose(space.std(0), torch.full((384,), 1 / CFG.noise_factor), atol=1e-4)
    assert not model.encoder.embeddings.word_embeddings.weight.requires_grad
    assert torch.equal(model.output_embeddings(), model.embed(model.out_ids[None])[0])


def test_at_init_the_denoiser_reads_clean_positions_as_the_pretrained_encoder_does(setup):
    """The timestep embedding starts at zero and x_t is put back at MiniLM's scale: a clean sequence gives the
    encoder's own hidden states, so the x0 estimate is the softmax-weighted embedding under its head."""
    _, model, batch = setup
    mask = control_range_mask(batch, CFG.mask, CFG.signals)
    resp = batch.is_response
    x0, logits = model(model.embed(batch.ids), torch.full((len(batch),), 50), mask, where=resp, return_logits=True)
    h = model.encoder(input_ids=batch.ids, attention_mask=mask).last_hidden_state
    expected = F.linear(model.head(h[resp]), model.encoder.embeddings.word_embeddings.weight[model.out_ids],
                        model.out_bias)
    assert torch.allclose(logits, expected, atol=1e-4)
    assert torch.allclose(x0[resp], expected.softmax(-1) @ model.output_embeddings(), atol=1e-4)
    assert (x0[~resp] == 0).all()


def test_the_loss_adds_the_heads_cross_entropy_and_training_lowers_it(setup):
    vocab, _, batch = setup
    torch.manual_seed(0)
    model = build_model(CFG, vocab).train()
    schedule = Schedule.from_config(CFG)
    t = torch.full((len(batch),), 60)
    gen = lambda: torch.Generator().manual_seed(3)
    loss, terms = training_loss(model, batch, schedule, t=t, generator=gen())
    assert set(terms) == {"mse", "prior", "ce", "loss", "accuracy"}
    assert float(loss.detach()) == pytest.approx(float(terms["mse"] + terms["prior"] + terms["ce"]), rel=1e-5)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(15):
        opt.zero_grad()
        training_loss(model, batch, schedule, t=t, generator=gen())[0].backward()
        opt.step()
    assert float(training_loss(model, batch, schedule, t=t, generator=gen())[1]["ce"]) < 0.5 * float(terms["ce"])


@pytest.mark.parametrize("solver,clamp", [("ancestral", False), ("ancestral", True), ("dpm++2m", False)])
def test_every_continuous_decoder_runs_and_a_saved_model_samples_the_same(setup, tmp_path, solver, clamp):
    vocab, model, batch = setup
    save_model(tmp_path / "m", model.state_dict(), CFG, vocab)
    loaded, _ = load_model(tmp_path / "m")
    run = lambda m: sample(m, batch, Schedule.from_config(CFG), 5, clamp, torch.Generator().manual_seed(1),
                           solver=solver)
    out = run(model)
    assert len(out) == len(batch) and out == run(loaded)


def test_config_checks_and_the_saved_config_of_older_models():
    assert "noise_factor" not in ModelConfig(family="masked").to_dict()  # at its default: as saved before it existed
    assert CFG.to_dict()["noise_factor"] == 2.0 and ModelConfig.from_dict(CFG.to_dict()) == CFG
    with pytest.raises(PipelineError, match="noise_factor"):
        ModelConfig(family="masked", noise_factor=2.0)
    with pytest.raises(PipelineError, match="emb_dim=384"):
        ModelConfig(**{**CFG.to_dict(), "emb_dim": 128})
    assert "soft_absorb" not in CFG.to_dict() and "t_min" not in CFG.to_dict()
    with pytest.raises(PipelineError, match="soft_absorb and evidence"):
        ModelConfig(family="masked", soft_absorb=True)
    with pytest.raises(PipelineError, match="t_min=3: in 1..T=2000, and 1 except for family=continuous"):
        ModelConfig(family="masked", t_min=3)


def test_the_soft_absorbing_state_replaces_response_positions_at_rate_t_over_T(setup):
    """At t = T every response position is noised from m (the gold tokens are not seen), at t = 1 hardly any is;
    m starts at WordPiece [MASK]'s point of the space and the sampler starts from q(x_T | m)."""
    vocab, _, batch = setup
    cfg = ModelConfig(**{**CFG.to_dict(), "soft_absorb": True})
    torch.manual_seed(0)
    model = build_model(cfg, vocab)
    assert torch.allclose(model.absorb, model.embed(torch.tensor([[vocab.mask]]))[0, 0])
    seen = []
    forward = model.forward
    model.forward = lambda x_t, *a, **k: (seen.append(x_t), forward(x_t, *a, **k))[1]
    resp = batch.is_response
    other = dataclasses.replace(batch, ids=torch.where(resp, 2023, batch.ids))  # every response token another
    schedule = Schedule.from_config(cfg)
    for t in (cfg.T, 1):
        for b in (batch, other):
            training_loss(model, b, schedule, t=torch.full((len(b),), t), generator=torch.Generator().manual_seed(5))
        same = torch.isclose(seen[-2], seen[-1]).all(-1)  # [B, L]
        assert same[resp].all() if t == cfg.T else not same[resp].any()
    start = len(seen)
    sample(model, batch, schedule, 3, generator=torch.Generator().manual_seed(1))
    clean = model.embed(batch.ids)
    eps = torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))
    x_T = schedule.respace(3).q_sample(model.absorb.expand_as(clean), torch.full((len(batch),), 3), eps)
    assert torch.allclose(seen[start][batch.is_response], x_T[batch.is_response].detach(), atol=1e-6)


def test_evidence_adds_the_gaussian_log_likelihood_of_x_t_under_each_token(setup):
    """With the head silenced, the logits are log N(x_t; sqrt(a) e_w, (1 - a) I) over the output tokens (normalised
    over them), computed by hand with torch.distributions; at small t they pick the gold token as rounding would."""
    vocab, _, batch = setup
    cfg = ModelConfig(**{**CFG.to_dict(), "evidence": True})
    model = build_model(cfg, vocab).eval()
    torch.nn.init.zeros_(model.head[2].weight), torch.nn.init.zeros_(model.head[2].bias)
    schedule, resp, mask = Schedule.from_config(cfg), batch.is_response, control_range_mask(batch, cfg.mask,
                                                                                            cfg.signals)
    for t in (2, 60):
        step = torch.full((len(batch),), t)
        x_t = schedule.q_sample(model.embed(batch.ids), step, torch.randn(*batch.ids.shape, 384,
                                                                         generator=torch.Generator().manual_seed(t)))
        _, logits = model(x_t, step, mask, where=resp, return_logits=True)
        a = schedule.alpha_bar[t].float()
        normal = torch.distributions.Normal(a.sqrt() * model.output_embeddings(), (1 - a).sqrt())
        expected = normal.log_prob(x_t[resp][:, None]).sum(-1)  # [N, V_out]
        assert torch.allclose(logits.log_softmax(-1), expected.log_softmax(-1), atol=1e-3)
        if t == 2:
            gold = batch.target[resp]
            assert torch.equal(logits.argmax(-1)[gold >= 0], gold[gold >= 0])
