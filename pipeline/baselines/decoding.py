"""Decode a trained baseline: control rows (`context`, and the controls the controlled LM is given) -> one response
each. `BaselineDecoder` serves every caller (stage sample_baseline, stage bench_baselines).

- trs: greedy, as the Transformer-based baselines' official code decodes; WordPiece ids back to (lower-cased) text as
  diffusemp's are (pipeline.diffusion.sampler.decode: "i ' m" -> "i'm").
- transfertransfo(_controls): nucleus sampling (top_p, temperature: params.yaml `baselines.lm_sampling`), at most
  `max_response` new tokens, stopped by SmolLM2's end token; the text is cut at its first line break (a line break
  starts the next turn of the prompt's format). Draws come from the global torch RNG, seeded per call.
"""
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from pipeline.baselines import causal_lm, seq2seq
from pipeline.diffusion.sampler import decode
from pipeline.errors import PipelineError
from pipeline.io import read_json
from pipeline.progress import progress


@dataclass(frozen=True)
class NucleusParams:
    """params.yaml `baselines.lm_sampling`."""

    top_p: float
    temperature: float


@torch.no_grad()
def greedy(model: seq2seq.Seq2Seq, sources: Sequence[list[int]], max_len: int, batch_size: int = 64) -> list[list[int]]:
    """Source ids per example -> the greedy target ids of each (START dropped, cut before END), at most max_len."""
    out = []
    for start in progress(range(0, len(sources), batch_size), desc="greedy (batches)"):
        source = seq2seq.padded(sources[start:start + batch_size])  # [B, S]
        memory = model.encode(source)
        target = torch.full((len(source), 1), seq2seq.START)  # [B, 1 + t]
        done = torch.zeros(len(source), dtype=torch.bool)
        for _ in range(max_len + 1):
            step = model.decode(memory, source, target)[:, -1].argmax(-1)  # [B]
            target = torch.cat([target, step.masked_fill(done, seq2seq.PAD)[:, None]], dim=1)
            done |= step == seq2seq.END
            if done.all():
                break
        for row in target[:, 1:].tolist():
            ids = row[:row.index(seq2seq.END)] if seq2seq.END in row else row
            out.append([i for i in ids if i != seq2seq.PAD][:max_len])
    return out


@torch.no_grad()
def nucleus(model, prompts: Sequence[list[int]], cfg: NucleusParams, max_new: int, pad_id: int, eos_id: int,
            batch_size: int = 16) -> list[list[int]]:
    """Prompt ids per example -> the sampled continuation ids of each (end token and padding dropped). Prompts are
    batched by length, left-padded."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    out: list[list[int]] = [[] for _ in prompts]
    for start in progress(range(0, len(order), batch_size), desc="nucleus (batches)"):
        picked = order[start:start + batch_size]
        width = max(len(prompts[i]) for i in picked)
        ids = torch.tensor([[pad_id] * (width - len(prompts[i])) + prompts[i] for i in picked])  # [B, width]
        attention = torch.tensor([[0] * (width - len(prompts[i])) + [1] * len(prompts[i]) for i in picked])
        generated = model.generate(input_ids=ids, attention_mask=attention, do_sample=True, top_p=cfg.top_p,
                                   temperature=cfg.temperature, top_k=0, max_new_tokens=max_new,
                                   eos_token_id=eos_id, pad_token_id=pad_id)[:, width:]
        for i, row in zip(picked, generated.tolist()):
            out[i] = row[:row.index(eos_id)] if eos_id in row else row
    return out


class BaselineDecoder:
    """A trained baseline (its model folder) -> texts for control rows."""

    def __init__(self, name: str, model_dir, sampling: NucleusParams):
        self.name, self.sampling = name, sampling
        if name == "trs":
            from pipeline.models import wordpiece_tokenizer

            self.model, self.tokenizer = seq2seq.load_trs(model_dir), wordpiece_tokenizer()
        else:
            trained = read_json(Path(model_dir) / "baseline.json", stage=f"baselines/dvc.yaml:train_lm@{name}")
            if trained["controls"] != (name == "transfertransfo_controls"):
                raise PipelineError(f"{model_dir} was trained {'with' if trained['controls'] else 'without'} "
                                    f"controls, not as {name}: rebuild it with `make baselines`")
            self.model, self.tokenizer, self.cfg, self.controls = causal_lm.load_lm(model_dir)

    def __call__(self, rows: Sequence[Mapping], seed: int) -> list[str]:
        """rows: dicts with `context` (list of turns) and, for the controlled LM, the CONTROL_FIELDS it is given."""
        torch.manual_seed(seed)
        if self.name == "trs":
            cfg = self.model.cfg
            sources = [seq2seq.encode_pair(self.tokenizer, list(r["context"]), None, cfg)[0] for r in rows]
            return [decode(ids).strip() for ids in greedy(self.model, sources, cfg.max_response)]
        prompts = [causal_lm.encode_pair(self.tokenizer, list(r["context"]), None, r if self.controls else None,
                                         self.cfg)[0] for r in rows]
        ids = nucleus(self.model, prompts, self.sampling, self.cfg.max_response + 1, self.tokenizer.pad_token_id,
                      self.tokenizer.eos_token_id)
        return [self.tokenizer.decode(x, skip_special_tokens=True).split("\n")[0].strip() for x in ids]
