"""Which machine a benchmark ran on (pipeline/experiments/bench.py: `machine`, written into metrics/bench.json and
metrics/bench_baselines.json so that committed timings name their machine), and the speed levers of issue 34
(pipeline/experiments/step_levers.py), each applied to a copy of a tiny model."""
import platform

import pytest
import torch
from torch import nn

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import collate, encode_example
from pipeline.diffusion.model import build_model
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.vocab import Vocab
from pipeline.experiments.bench import cpu_name, machine
from pipeline.experiments.step_levers import LEVERS, attention_dropout, frozen_embedding, lever_figures, no_dropout
from test_diffusion_core import ROWS


def test_cpu_name_reads_the_first_model_name(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n\n"
                    "processor\t: 1\nmodel name\t: Intel(R) Xeon(R) Platinum 8488C\n")
    assert cpu_name(str(info)) == "Intel(R) Xeon(R) Platinum 8488C"


def test_cpu_name_without_cpuinfo_falls_back_to_platform(tmp_path):
    assert cpu_name(str(tmp_path / "missing")) == (platform.processor() or platform.machine())


def test_machine_names_cpu_isa_and_threads():
    host = machine()
    assert host["cpu"] and host["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert set(host["cpu_bf16"]) <= {"amx_bf16", "avx512_bf16"}
    assert host["threads"] == torch.get_num_threads() and "gpu" not in host


MINILM = ModelConfig(family="masked", init="minilm", width=384, heads=12, ffn=1536, layers=1, dropout=0.1,
                     max_len=64, max_context=16)
RANDOM = ModelConfig(family="masked", width=64, layers=2, heads=4, ffn=128, dropout=0.1, max_len=64, max_context=16)


def tiny(cfg):
    vocab = Vocab.build(ROWS, cfg)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, pretrained=False)
    return model, collate([encode_example(["hello"], r, vocab, cfg, r["subword_ids"]) for r in ROWS])


def dropout_rates(model):
    return sorted(m.p for m in model.modules() if isinstance(m, nn.Dropout))


def test_attention_dropout_lever_changes_only_the_attention_probabilities():
    model, _ = tiny(MINILM)
    before = dropout_rates(model)
    attention_dropout(0.0)(model)
    assert model.encoder.encoder.layer[0].attention.self.dropout.p == 0.0
    assert dropout_rates(model) == sorted([0.0] + before[:-1])  # one attention dropout per layer, the rest kept
    scratch, _ = tiny(RANDOM)
    attention_dropout(0.0)(scratch)
    assert all(block.dropout == 0.0 for block in scratch.transformer.blocks)
    assert set(dropout_rates(scratch)) == {0.1}  # the residual dropouts are nn.Dropout and stay


def test_no_dropout_makes_a_training_mode_forward_deterministic():
    model, batch = tiny(MINILM)
    no_dropout(model)
    model.train()
    mask = torch.ones(len(batch), 1, batch.ids.shape[1], batch.ids.shape[1], dtype=torch.bool)
    assert torch.equal(model(batch.ids, mask), model(batch.ids, mask))


def test_lever_figures_time_and_profile_each_lever_on_a_copy():
    model, batch = tiny(MINILM)
    weights = model.embedding.weight.detach().clone()
    out = lever_figures(model, batch, Schedule(MINILM.T), False, 1.0, 1, 2, 5, list(LEVERS))
    assert list(out) == list(LEVERS)
    for figures in out.values():
        assert len(figures["rounds_seconds"]) == 2
        assert figures["seconds_per_step"] == pytest.approx(sum(figures["rounds_seconds"]) / 2, abs=1e-4)
        shares = [row["share"] for row in figures["profile"]]
        assert 0 < len(shares) <= 5 and shares == sorted(shares, reverse=True) and sum(shares) <= 1.001
        assert figures["seconds_per_step"] > 0 and figures["gflop_per_step"] > 0
    assert torch.equal(model.embedding.weight, weights)  # the levers changed copies, not the model
    assert set(dropout_rates(model)) == {0.1}
    frozen = tiny(MINILM)[0]
    frozen_embedding(frozen)
    assert not frozen.embedding.weight.requires_grad
    assert all(p.requires_grad for name, p in frozen.named_parameters() if "word_embeddings" not in name)
