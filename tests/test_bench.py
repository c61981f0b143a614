"""Which machine a benchmark ran on (pipeline/experiments/bench.py: `machine`, written into metrics/bench.json and
metrics/bench_baselines.json so that committed timings name their machine), the training forward's attention kernel
(trainer.training_forward), and the speed levers of issue 34 (pipeline/experiments/step_levers.py), each applied to a
copy of a tiny model."""
import dataclasses
import platform

import pytest
import torch

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import collate, encode_example
from pipeline.diffusion.model import build_model
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.vocab import Vocab
from pipeline.experiments.bench import cpu_name, machine
from pipeline.diffusion.losses import training_loss
from pipeline.diffusion.trainer import training_forward
from pipeline.experiments.bench import train_step
from pipeline.experiments.step_levers import LEVERS, frozen_embedding, lever_figures, step_profile
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
MINILM_NO_DROPOUT = dataclasses.replace(MINILM, dropout=0.0)
RANDOM = ModelConfig(family="masked", width=64, layers=2, heads=4, ffn=128, dropout=0.1, max_len=64, max_context=16)


def tiny(cfg):
    vocab = Vocab.build(ROWS, cfg)
    torch.manual_seed(0)
    model = build_model(cfg, vocab, pretrained=False)
    return model, collate([encode_example(["hello"], r, vocab, cfg, r["subword_ids"]) for r in ROWS])


def test_training_forward_runs_sdpa_math_kernel_on_cpu_and_the_same_function_as_auto():
    model, batch = tiny(MINILM_NO_DROPOUT)
    ops = {kernel: {row["op"] for row in step_profile(train_step(model, batch, Schedule(MINILM.T), False, kernel),
                                                        1, 1000)} for kernel in ("math", "auto")}
    flash = "aten::_scaled_dot_product_flash_attention_for_cpu"
    assert flash in ops["auto"] and flash not in ops["math"]
    assert "aten::_scaled_dot_product_attention_math" in ops["math"]
    grads = {}
    for kernel in ("math", "auto"):
        model.zero_grad(set_to_none=True)
        with training_forward(torch.device("cpu"), False, kernel):
            loss, _ = training_loss(model, batch, Schedule(MINILM.T), generator=torch.Generator().manual_seed(0))
        loss.backward()
        grads[kernel] = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(grads["math"], grads["auto"], strict=True))


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
    frozen = tiny(MINILM)[0]
    frozen_embedding(frozen)
    assert not frozen.embedding.weight.requires_grad
    assert all(p.requires_grad for name, p in frozen.named_parameters() if "word_embeddings" not in name)
