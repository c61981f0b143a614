"""The continuous family on the pretrained MiniLM encoder (model.ContinuousMiniLMModel): its frozen, standardised
diffusion space, an encoder that starts as the pretrained one, x0 as the expected embedding under the cross-entropy
head, the loss terms, and a save / load round trip."""
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
