"""bf16: auto -> bfloat16 autocast only where the device computes it natively, with the capability check mocked both ways."""
import dataclasses

import pytest
import torch

from pipeline import precision
from pipeline.decoder import Decoder
from pipeline.diffusion import trainer
from pipeline.diffusion.config import SampleConfig, TrainConfig
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.params import load_params, section
from pipeline.precision import native_bf16, precision_report, use_bf16
from pipeline.taggers import TaggerParams
from test_trainer import SENTENCES, TCFG, control_row, fresh_model, tiny_setup


def fake_cpu(monkeypatch, capability: str, features: dict) -> None:
    monkeypatch.setattr(precision, "cpu_capability", lambda: capability)
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: features)


@pytest.mark.parametrize("capability, features, native", [
    ("AVX512", {"amx_bf16": True, "avx512_bf16": True}, True),  # Sapphire Rapids and newer
    ("AVX512", {"amx_bf16": False, "avx512_bf16": True}, True),  # Cooper Lake, Zen 4
    ("AVX512", {"amx_bf16": False, "avx512_bf16": False}, False),  # Skylake / Ice Lake servers: AVX-512 alone
    ("AVX2", {"amx_bf16": False, "avx512_bf16": False}, False),  # Zen 2/3, client CPUs
    ("AVX2", {"amx_bf16": True, "avx512_bf16": True}, False),  # an AMX CPU under ATEN_CPU_CAPABILITY=avx2
    ("DEFAULT", {}, False),  # ARM and others
])
def test_native_bf16_on_cpu_follows_the_dispatch_level_and_the_bf16_units(monkeypatch, capability, features, native):
    fake_cpu(monkeypatch, capability, features)
    assert native_bf16("cpu") is native
    assert use_bf16("auto", "cpu") is native
    assert use_bf16(True, "cpu") is True and use_bf16(False, "cpu") is False  # forced either way
    report = precision_report(use_bf16("auto", "cpu"), "cpu")
    assert report == {"precision": "bfloat16" if native else "float32", "device": "cpu",
                      "cpu_capability": capability, "native_bf16": native}


@pytest.mark.parametrize("supported", [True, False])
def test_native_bf16_on_cuda_asks_the_gpu(monkeypatch, supported):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: supported)
    assert native_bf16("cuda") is supported and use_bf16("auto", torch.device("cuda", 0)) is supported


def test_a_setting_that_is_not_a_precision_is_refused():
    with pytest.raises(ValueError, match="'yes'"):
        use_bf16("yes", "cpu")


def test_the_default_profile_runs_nothing_in_bfloat16_without_native_support(monkeypatch):
    fake_cpu(monkeypatch, "AVX2", {"amx_bf16": False, "avx512_bf16": False})
    p = load_params()
    settings = {"train_taggers": section(p, "train_taggers", TaggerParams).bf16,
                "train": section(p, "train", TrainConfig).bf16, "sample": section(p, "sample", SampleConfig).bf16}
    assert settings == {"train_taggers": "auto", "train": "auto", "sample": "auto"}
    assert not any(use_bf16(s, "cpu") for s in settings.values())
    fake_cpu(monkeypatch, "AVX512", {"amx_bf16": True})
    assert all(use_bf16(s, "cpu") for s in settings.values())


@pytest.mark.parametrize("native", [False, True])
def test_training_and_sampling_under_auto_autocast_exactly_where_native(monkeypatch, tmp_path, native):
    """The trainer and the sampler, run with bf16: auto, compute the denoiser's logits in bfloat16 iff native, and the
    training summary says which precision ran."""
    monkeypatch.setattr(precision, "native_bf16", lambda device: native)
    torch.set_num_threads(1)
    vocab, examples, schedule = tiny_setup()
    dtypes, forward = [], DiffusEmpModel.forward

    def recording_forward(self, *args, **kwargs):
        out = forward(self, *args, **kwargs)
        dtypes.append(out.dtype)
        return out

    monkeypatch.setattr(DiffusEmpModel, "forward", recording_forward)
    cfg = dataclasses.replace(TCFG, steps=2, bf16="auto", valid_sample_examples=0)
    result = trainer.train(fresh_model(vocab), examples, schedule, cfg, seed=1, checkpoint=tmp_path / "c.pt",
                           fingerprint={})
    expected = torch.bfloat16 if native else torch.float32
    assert dtypes and set(dtypes) == {expected}
    assert result.summary["precision"] == ("bfloat16" if native else "float32")

    dtypes.clear()
    model = fresh_model(vocab).eval()
    rows = [control_row(*s) for s in SENTENCES[:2]]
    sample_cfg = SampleConfig(split="test", subset=None, steps=2, clamp=False, temperature=0.0, solver="ancestral",
                              edit_strength=0.5, num_samples=1, rerank="none", candidates=None, edit_candidates=None,
                              batch_size=2, bf16="auto")
    Decoder(model, vocab, sample_cfg).draw(rows, seed=0)
    assert dtypes and set(dtypes) == {expected}
