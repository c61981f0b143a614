"""Which precision a run computes in: bfloat16 autocast only where the hardware computes it natively.

Every `bf16` param (train_taggers, train, sample) takes `auto`, `true` or `false`. `auto` turns bfloat16 autocast on
where the device has bfloat16 matrix units, and leaves float32 elsewhere: on a CPU without them, PyTorch emulates
bfloat16 and a matmul runs several times slower than in float32 (docs/diffusion.md, "Precision per CPU class").

Native bfloat16:
- CUDA: the GPU supports it (torch.cuda.is_bf16_supported(): Ampere and newer);
- CPU: PyTorch dispatches its AVX-512 kernels (torch.backends.cpu.get_cpu_capability()) and the CPU has AMX-BF16 or
  AVX512-BF16. Reading the dispatch level makes PyTorch's own override `ATEN_CPU_CAPABILITY=avx2` count as a CPU
  without native bfloat16: with `ONEDNN_MAX_CPU_ISA=AVX2` it is the stand-in for an AVX2-only CPU on an AMX machine.
  ARM CPUs count as without (their bfloat16 paths in PyTorch are not measured here).
"""
from typing import Literal

import torch

Bf16 = bool | Literal["auto"]  # the type of every `bf16` param
NATIVE_CPU_FEATURES = ("amx_bf16", "avx512_bf16")  # torch.cpu.get_capabilities() keys of a bfloat16 matrix unit


def cpu_capability() -> str:
    """The instruction set PyTorch dispatches its CPU kernels to: 'AVX512', 'AVX2', 'DEFAULT', ..."""
    return torch.backends.cpu.get_cpu_capability()


def cpu_bf16_features() -> list[str]:
    """Which of NATIVE_CPU_FEATURES this CPU has."""
    caps = torch.cpu.get_capabilities()
    return [f for f in NATIVE_CPU_FEATURES if caps.get(f)]


def native_bf16(device: torch.device | str) -> bool:
    """Whether `device` computes bfloat16 matmuls natively (see the module docstring)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return cpu_capability() == "AVX512" and bool(cpu_bf16_features())
    return False


def use_bf16(setting: Bf16, device: torch.device | str) -> bool:
    """Whether a run with param `bf16: setting` on `device` computes under bfloat16 autocast: true and false force it,
    auto follows native_bf16."""
    if setting == "auto":
        return native_bf16(device)
    if not isinstance(setting, bool):
        raise ValueError(f"bf16 is {setting!r}: expected true, false or auto")
    return setting


def precision_name(bf16: bool) -> str:
    return "bfloat16" if bf16 else "float32"


def precision_report(bf16: bool, device: torch.device | str) -> dict:
    """What a metrics file records of the precision that ran, so that two machines' figures can be told apart:
    {"precision": "bfloat16" | "float32", "device", "cpu_capability", "native_bf16"}."""
    return {"precision": precision_name(bf16), "device": str(torch.device(device)),
            "cpu_capability": cpu_capability(), "native_bf16": native_bf16(device)}
