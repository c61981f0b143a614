"""Throughput figures of a DiffusEmp model on this machine (benchmarks, never asserts): training examples/s and
achieved GFLOP/s next to a matmul peak measured in the same process, sampling responses/s (the sampler alone at each
of several step counts, and the whole default decoding: draws + rerank), peak memory.

FLOPs are counted, not estimated: torch.utils.flop_counter counts every matmul / attention of one training step
(forward + backward), so GFLOP/s = counted FLOPs per step / measured seconds per step.
"""
import copy
import os
import platform
import resource
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from pipeline.decoder import Decoder
from pipeline.diffusion.config import SampleConfig
from pipeline.diffusion.inputs import Batch, Example, collate, encode_rows
from pipeline.diffusion.losses import training_loss
from pipeline.diffusion.sampler import sample
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.trainer import CPU_ATTENTION, adamw, training_forward
from pipeline.precision import Bf16, cpu_bf16_features, cpu_capability, precision_name, precision_report, use_bf16


@dataclass(frozen=True)
class BenchParams:
    """params.yaml `bench`: timed training steps (after one warm-up step), responses per timed sampling batch, the
    sampler's step counts timed (None: the most, all T for the continuous family, one token per step for the
    masked one), and the side of the square matmul that measures each precision's peak."""

    train_steps: int
    sample_batch: int
    sample_steps: list[int | None]
    matmul_size: int


def bench_rows(controls: pd.DataFrame, train_batch: int, sample_batch: int, seed: int) -> tuple[list[dict], list[dict]]:
    """Real inputs (schema CONTROLS rows): one training batch of `train_batch` seeded train rows (timed with their
    gold responses) and `sample_batch` seeded test rows to sample for."""
    train = controls[controls["split"] == "train"].sample(n=train_batch, random_state=seed)
    test = controls[controls["split"] == "test"].sample(n=sample_batch, random_state=seed)
    return train.to_dict("records"), test.to_dict("records")


def cpu_name(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name as the OS reports it (Linux: `cpuinfo`; elsewhere: platform.processor())."""
    try:
        with open(cpuinfo) as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
    except OSError:
        names = []
    return names[0] if names else platform.processor() or platform.machine()


def machine(device: torch.device = torch.device("cpu")) -> dict:
    """Which machine a timing ran on: {"cpu": model name, "cpu_capability": PyTorch's kernel dispatch level,
    "cpu_bf16": the bfloat16 matrix units it has (AMX, AVX512-BF16), "logical_cpus", "threads": torch's, "torch",
    ["gpu": the device's name on CUDA]}."""
    out = {"cpu": cpu_name(), "cpu_capability": cpu_capability(), "cpu_bf16": cpu_bf16_features(),
           "logical_cpus": os.cpu_count(), "threads": torch.get_num_threads(), "torch": torch.__version__}
    if device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int, warmup: bool = True) -> float:
    """Seconds per call of fn, after one untimed warm-up call unless `warmup` is False."""
    if warmup:
        fn()
        sync(device)
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync(device)
    return (time.perf_counter() - start) / repeats


def matmul_peak_gflops(device: torch.device, bf16: bool, n: int, repeats: int = 5) -> float:
    """GFLOP/s of an n x n matmul in bfloat16 (bf16) or float32: the practical compute ceiling of this device in that
    precision."""
    dtype = torch.bfloat16 if bf16 else torch.float32
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    return 2 * n ** 3 / timed(lambda: a @ b, device, repeats) / 1e9


def train_step_flops(model: nn.Module, batch: Batch, schedule: Schedule, bf16: bool,
                     cpu_attention: str = CPU_ATTENTION) -> int:
    """FLOPs of one training step's forward and backward (the optimizer update is negligible), with the trainer's
    kernels (trainer.training_forward)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        with training_forward(batch.ids.device, bf16, cpu_attention):
            loss, _ = training_loss(model, batch, schedule)
        loss.backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def train_step(model: nn.Module, batch: Batch, schedule: Schedule, bf16: bool,
               cpu_attention: str = CPU_ATTENTION) -> Callable[[], None]:
    """One AdamW step (the trainer's optimizer) of `model` on `batch` with the trainer's kernels (bfloat16 autocast
    when bf16, the attention kernel of cpu_attention: trainer.training_forward), as a callable that updates `model`."""
    device = next(model.parameters()).device
    opt = adamw(model, lr=1e-4, weight_decay=0.0)

    def step() -> None:
        with training_forward(device, bf16, cpu_attention):
            loss, _ = training_loss(model, batch, schedule)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return step


def step_figures(batch: Batch, seconds: float, flops: int, peak: float, bf16: bool) -> dict:
    """The figures of a training step that took `seconds` and counted `flops`, against a matmul `peak` (GFLOP/s)."""
    gflops = flops / seconds / 1e9
    return {"precision": precision_name(bf16), "batch_size": len(batch), "seq_len": batch.ids.shape[1],
            "seconds_per_step": round(seconds, 4),
            "examples_per_s": round(len(batch) / seconds, 2), "gflop_per_step": round(flops / 1e9, 2),
            "achieved_gflops": round(gflops, 2), "fraction_of_matmul_peak": round(gflops / peak, 3)}


def training_throughput(model: nn.Module, batch: Batch, schedule: Schedule, steps: int, peak: float,
                        bf16: bool) -> dict:
    """Time `steps` training steps (train_step) on a copy of `model` (the model itself is left untouched) -> figures
    dict (step_figures)."""
    device = next(model.parameters()).device
    model = copy.deepcopy(model).train()
    flops = train_step_flops(model, batch, schedule, bf16)
    return step_figures(batch, timed(train_step(model, batch, schedule, bf16), device, steps), flops, peak, bf16)


def sampling_throughput(model: nn.Module, batch: Batch, schedule: Schedule, steps: int | None,
                        cfg: SampleConfig) -> dict:
    """Responses/s of one sample() call over `batch` with `steps` reverse steps and cfg's other settings."""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(0)
    bf16 = use_bf16(cfg.bf16, device)
    # No warm-up call: one sampling run is many forward passes, and a second full-T run would double the cost.
    seconds = timed(lambda: sample(model, batch, schedule, steps, cfg.clamp, generator, cfg.temperature,
                                   bf16=bf16, solver=cfg.solver), device, 1, warmup=False)
    return {"steps": steps, "precision": precision_name(bf16), "batch_size": len(batch), "seconds": round(seconds, 2),
            "responses_per_s": round(len(batch) / seconds, 3)}


def decoding_throughput(decoder: Decoder, rows: Sequence[Mapping], group: int) -> dict:
    """Responses/s of the whole default decoding as stage `sample` runs it (the decoder's settings and judges) for
    each of `rows` (control-source rows): decoder.cfg.num_samples draws of each of `group` candidates (the row itself
    stands in for each, the same work as distinct candidates of its length), one kept by the rerank over them all (the
    reranker's own scoring included)."""
    cfg = decoder.cfg
    candidates = [row for row in rows for _ in range(group)]
    seconds = timed(lambda: decoder(candidates, seed=0, group=group), next(decoder.model.parameters()).device, 1,
                    warmup=False)
    return {"steps": cfg.steps, "candidates": group, "num_samples": cfg.num_samples, "rerank": cfg.rerank,
            "responses": len(rows), "seconds": round(seconds, 2), "responses_per_s": round(len(rows) / seconds, 3)}


def peak_memory_mb(device: torch.device) -> dict:
    """Peak resident memory of this process (CPU) and, on a GPU, peak allocated device memory, in MiB."""
    out = {"process_max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    return out


def run_bench(decoder: Decoder, train_examples: list[Example], sample_rows: list[dict], candidates: int,
              train_steps: int, train_bf16: Bf16, sample_steps: Sequence[int | None], matmul_size: int) -> dict:
    """All figures for metrics/bench.json.

    decoder: the trained model with the `sample` settings and the judges of its rerank rule. train_examples: one
    training batch (gold responses), timed as the trainer runs it (trainer.training_forward), in the precision that
    `train.bf16` (train_bf16) gives on this device, against the matmul peak of that precision (both peaks are
    reported). sample_rows: control rows (with `context`)
    of one sampling batch, sampled once per entry of sample_steps (the sampler alone: one draw, no rerank), then by
    the whole default decoding (num_samples draws of each of `candidates` candidates, the rerank). matmul_size: the
    side of the peaks' matmul (where bf16 is emulated, as on AVX2, bfloat16 runs at about 1 GFLOP/s: a 2048
    one takes some 20 s per run).
    """
    model, vocab, sampling = decoder.model, decoder.vocab, decoder.cfg
    device = next(model.parameters()).device
    schedule = Schedule.from_config(model.cfg)
    bf16 = use_bf16(train_bf16, device)
    peaks = {precision_name(b): round(matmul_peak_gflops(device, b, matmul_size), 2) for b in (False, True)}
    out = {**precision_report(bf16, device), "machine": machine(device), "matmul_size": matmul_size,
           "matmul_peak_gflops": peaks,
           "parameters": sum(p.numel() for p in model.parameters()),
           "train": training_throughput(model, collate(train_examples).to(device), schedule, train_steps,
                                        peaks[precision_name(bf16)], bf16)}
    batch = collate(encode_rows(sample_rows, vocab, model.cfg, gold=False)).to(device)
    out["sample"] = [sampling_throughput(model.eval(), batch, schedule, steps, sampling) for steps in sample_steps]
    out["decoding_default"] = decoding_throughput(decoder, sample_rows, candidates)
    out["peak_memory"] = peak_memory_mb(device)
    return out
