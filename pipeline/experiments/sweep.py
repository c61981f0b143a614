"""Quality per training minute: train each candidate design and measure what sampling produces along the way.

A design is a set of overrides of params.yaml's `model` and `train` sections. Each design trains once; at every mark
(minutes of training, or optimizer steps) the run pauses, and the EMA weights are scored on held-out valid examples
(evaluate.py: loss, one-shot accuracy per quarter of t, sampling token accuracy) plus the SmolLM2 fluency of the
sampled texts, once per decoder of the designs file (evaluate.DECODERS: every family judged by the same decoder
determinism; `clamped` only for the continuous family): one row per design, mark and decoder. The pauses are
checkpoint resumes of the ordinary trainer, so a mark's figures are those of a run stopped there. The lr schedule is
taken over the whole sweep (use lr_decay: none for an anytime curve: a linear decay would anneal only at the last
mark).

Minutes are the training minutes of the machine the sweep ran on. A sweep run on a GPU in steps gives CPU minutes as
an estimate: steps x batch / the design's CPU examples/s measured on the default machine class (`cpu_examples_per_s`
in the designs file), labelled as such (`cpu_minutes_est`).
"""
import copy
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from pipeline.diffusion.checkpoint import config_fingerprint
from pipeline.diffusion.config import ModelConfig, TrainConfig
from pipeline.diffusion.evaluate import DECODERS, regenerated
from pipeline.diffusion.inputs import collate, encode_rows
from pipeline.diffusion.model import build_model
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.trainer import train
from pipeline.diffusion.vocab import Vocab
from pipeline.bootstrap import interval
from pipeline.errors import PipelineError
from pipeline.experiments.bench import BenchParams, matmul_peak_gflops, training_throughput
from pipeline.metrics.relevance import fluency_ppl
from pipeline.params import check, value
from pipeline.plots import minutes_axis
from pipeline.precision import use_bf16
from pipeline.progress import log


@dataclass(frozen=True)
class Designs:
    """A designs file (sweeps/*.yaml). designs: name -> overrides of params.yaml's `model` and `train` sections
    (`merged`); minutes or steps (exactly one): the marks, in training minutes or optimizer steps; valid_examples: the
    valid examples scored at each mark; cpu_examples_per_s: name -> the design's training speed on the default CPU
    machine class, for the CPU-minute estimate of a sweep in steps (`cpu_minutes`); decoders: the evaluate.DECODERS
    each mark is sampled with (null: deterministic and sampled)."""

    designs: dict
    minutes: list[float] | None = None
    steps: list[float] | None = None
    valid_examples: int = 64
    cpu_examples_per_s: dict | None = None
    decoders: list[str] | None = None

    def __post_init__(self):
        if not self.designs or (self.minutes is None) == (self.steps is None) or not (self.minutes or self.steps):
            raise PipelineError("a designs file needs `minutes:` or `steps:` (a list of marks) and `designs:` (name -> "
                                "overrides of the model/train sections)")
        unknown = sorted(set(self.decoders or ()) - set(DECODERS))
        if unknown:
            raise PipelineError(f"designs file: unknown decoders {unknown} (any of {', '.join(DECODERS)})")

    @classmethod
    def load(cls, path) -> "Designs":
        """The checked designs file at `path` (a missing optional key takes its default). pipeline.params.check
        names params.yaml in its errors: they name this file instead."""
        try:
            return check(yaml.safe_load(Path(path).read_text()) or {}, cls, "designs file", defaults=True)
        except PipelineError as err:
            raise PipelineError(str(err).replace("params.yaml", str(path), 1)) from None

    @property
    def unit(self) -> str:
        return "minutes" if self.minutes is not None else "steps"

    @property
    def marks(self) -> list[float]:
        return [float(m) for m in self.minutes or self.steps]

    @property
    def decoder_names(self) -> list[str]:
        return self.decoders or ["deterministic", "sampled"]


def merged(base: dict, overrides: dict) -> dict:
    """base with overrides applied key by key, one level of sections deep (model / train)."""
    unknown = set(overrides) - {"model", "train"}
    if unknown:
        raise PipelineError(f"sweep design overrides {sorted(unknown)}: only `model` and `train` can be overridden")
    out = copy.deepcopy(base)
    for name, values in overrides.items():
        out[name] = {**out.get(name, {}), **(values or {})}
    return out


def run_design(name: str, params: dict, overrides: dict, train_rows: list[dict], valid_rows: list[dict],
               marks: list[float], unit: str, workdir: Path, device: torch.device,
               fluency_nll: Callable[[list[str]], np.ndarray] | None,
               decoders: Sequence[str] = ("deterministic",)) -> list[dict]:
    """Train design `name` up to each mark in turn (unit "minutes" or "steps") -> one figures row per mark and decoder
    (evaluate.DECODERS; `clamped` is skipped for the masked family, where it is `sampled`), its valid examples
    regenerated by the EMA weights with `train.valid_sample_steps` steps (example_accuracy: each one's token accuracy,
    for `paired_differences`).
    fluency_nll: None leaves fluency_ppl NaN (score the saved texts later: `fluency_column`). The CPU-minute estimate
    is added to the whole table by `cpu_minutes`."""
    p = merged(params, overrides)
    model_cfg, seed = check(p["model"], ModelConfig, "model"), value(p, "seed", int)
    # The sampling figures come from `regenerate` below, once per decoder, not from the trainer.
    train_base = {**p["train"], "checkpoint_every_s": 0, "checkpoint_every_steps": 0, "valid_sample_examples": 0}
    if unit == "minutes":  # enough steps never to be the limit; the minutes stop each leg
        train_base["steps"] = max(int(train_base["steps"]), 10 ** 7)
    vocab = Vocab.build(train_rows, model_cfg)
    examples, valid = encode_rows(train_rows, vocab, model_cfg), encode_rows(valid_rows, vocab, model_cfg)
    torch.manual_seed(seed)
    model = build_model(model_cfg, vocab).to(device)
    schedule = Schedule.from_config(model_cfg)
    checkpoint = workdir / f"{name}.pt"
    checkpoint.unlink(missing_ok=True)
    rows = []
    for mark in marks:
        leg = {**train_base, **({"max_minutes": mark} if unit == "minutes" else {"steps": int(mark)})}
        cfg = check(leg, TrainConfig, "train")
        result = train(model, examples, schedule, cfg, seed, checkpoint, config_fingerprint(model_cfg, cfg, seed, vocab),
                       valid)
        s = result.summary
        ema = copy.deepcopy(model)
        ema.load_state_dict(result.ema)
        for decoder in decoders:
            if model_cfg.family == "masked" and DECODERS[decoder]["clamp"]:
                continue
            accuracy, texts = regenerated(ema, schedule, valid, cfg.batch_size, cfg.valid_sample_steps, seed,
                                          use_bf16(cfg.bf16, device), decoder)
            row = {"design": name, "family": model_cfg.family, "mark": mark, "unit": unit, "decoder": decoder,
                   "steps": s["steps"], "batch_size": cfg.batch_size, "minutes": s["train_minutes"],
                   "device": s["device"], "examples_per_s": s["examples_per_s_this_run"],
                   "valid_loss": s["valid"]["loss"], "valid_accuracy": s["valid"]["accuracy"],
                   **{f"accuracy_{q}": v for q, v in s["valid_accuracy_by_noise"].items()},
                   "sampling_accuracy": round(float(np.mean(accuracy)), 4),
                   "example_accuracy": json.dumps([round(a, 4) for a in accuracy]),
                   "fluency_ppl": fluency_ppl(fluency_nll(texts)) if fluency_nll else float("nan"),
                   "texts": json.dumps(texts)}
            log(f"[sweep] {name} @ {mark} {unit}, {decoder}: step {row['steps']}, sampling accuracy "
                f"{row['sampling_accuracy']}, fluency PPL {row['fluency_ppl']:.1f}; e.g. {texts[0]!r}")
            rows.append(row)
    return rows


def cpu_minutes(table, cpu_examples_per_s: dict[str, float]):
    """The table with cpu_minutes_est = steps x batch_size / the design's CPU examples/s / 60 (NaN for a design
    without a speed)."""
    table = table.copy()
    speed = table["design"].map(cpu_examples_per_s).astype(float)
    table["cpu_minutes_est"] = (table["steps"] * table["batch_size"] / speed / 60).round(2)
    return table


def paired_differences(table, baseline: str, resamples: int, seed: int) -> list[dict]:
    """Each row of the other designs against the `baseline` design's row of the same decoder nearest to it in training
    minutes (plots.minutes_axis): its sampling accuracy minus the baseline's over the same valid examples, with the
    paired bootstrap 95% interval (`resamples` resamples of the examples) ->
    [{"design", "decoder", "mark", "minutes", "baseline_mark", "baseline_minutes", "difference": {"mean", "low",
    "high"}}]. A row of a decoder the baseline has no rows of (`clamped` of a continuous design against a masked
    baseline, which skips it) gets {"design", "decoder", "mark", "minutes", "unpaired": why} instead."""
    x = minutes_axis(table)
    base = table[table["design"] == baseline]
    if base.empty:
        raise PipelineError(f"sweep baseline {baseline!r} is not a design of the table (designs: "
                            f"{', '.join(table['design'].unique())})")
    out = []
    for _, row in table[table["design"] != baseline].iterrows():
        same = base[base["decoder"] == row["decoder"]]
        if same.empty:
            out.append({"design": row["design"], "decoder": row["decoder"], "mark": row["mark"], "minutes": row[x],
                        "unpaired": f"the baseline {baseline!r} has no {row['decoder']} rows"})
            continue
        ref = same.loc[(same[x] - row[x]).abs().idxmin()]
        diff = np.array(json.loads(row["example_accuracy"])) - np.array(json.loads(ref["example_accuracy"]))
        out.append({"design": row["design"], "decoder": row["decoder"], "mark": row["mark"], "minutes": row[x],
                    "baseline_mark": ref["mark"], "baseline_minutes": ref[x],
                    "difference": {k: round(v, 4) for k, v in interval(diff, resamples, seed).items()}})
    return out


def fluency_column(table, fluency_nll: Callable[[list[str]], np.ndarray]):
    """Fill the NaN fluency_ppl cells of a sweep table from its saved texts (a GPU sweep has no SmolLM2)."""
    table = table.copy()
    todo = table["fluency_ppl"].isna()
    table.loc[todo, "fluency_ppl"] = [fluency_ppl(fluency_nll(json.loads(t))) for t in table.loc[todo, "texts"]]
    return table


def design_speed(params: dict, overrides: dict, train_rows: list[dict], steps: int, device: torch.device) -> dict:
    """Training speed of a design on this machine: `steps` timed AdamW steps (after one warm-up) on a seeded batch
    of real training rows, in the precision of the design's train.bf16 (bench.training_throughput) -> its figures
    (examples_per_s, ...)."""
    p = merged(params, overrides)
    model_cfg, train_cfg = check(p["model"], ModelConfig, "model"), check(p["train"], TrainConfig, "train")
    seed, bf16 = value(p, "seed", int), use_bf16(train_cfg.bf16, device)
    vocab = Vocab.build(train_rows, model_cfg)
    pick = np.random.default_rng(seed).choice(len(train_rows), size=train_cfg.batch_size, replace=False)
    batch = collate(encode_rows([train_rows[i] for i in pick], vocab, model_cfg)).to(device)
    torch.manual_seed(seed)
    model = build_model(model_cfg, vocab).to(device)
    peak = matmul_peak_gflops(device, bf16, check(p["bench"], BenchParams, "bench").matmul_size)
    return training_throughput(model, batch, Schedule.from_config(model_cfg), steps, peak, bf16)
