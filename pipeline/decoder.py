"""One decoder for every caller (stage sample, respond, the benchmark, the decoding sweep): the diffusion model and
its vocab, the sampler's settings (SampleConfig) and the models of the rerank (Judges), the way diffusers'
DiffusionPipeline holds its parts.

One call takes control rows (mappings with `context` and the CONTROL_FIELDS keys), encodes them once, draws
cfg.num_samples texts per row (pipeline.diffusion.generate.draw), pools the draws of each group of consecutive rows
(the candidates of one example), leaves out the draws of rows whose response the model's max_len cut when a row of the
group is whole, and keeps one text per group by cfg.rerank (pipeline.rerank).
"""
import dataclasses
from collections.abc import Mapping, Sequence

import numpy as np
import torch
from torch import nn

from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import SampleConfig
from pipeline.diffusion.generate import complete, draw
from pipeline.diffusion.inputs import encode_rows
from pipeline.diffusion.vocab import Vocab
from pipeline.rerank import Judges, rerank


class Decoder:
    """model + vocab: a trained model (`load`); cfg: the sampler's settings; judges: the models cfg.rerank reads
    (`pipeline.judges.load_judges`), checked here, before anything is drawn."""

    def __init__(self, model: nn.Module, vocab: Vocab, cfg: SampleConfig, judges: Judges = Judges()):
        judges.check(cfg.rerank)
        self.model, self.vocab, self.cfg, self.judges = model, vocab, cfg, judges

    @classmethod
    def load(cls, model_dir, cfg: SampleConfig, judges: Judges = Judges(),
             device: str | torch.device = "cpu") -> "Decoder":
        """With the trained model of stage `train_diffusion` (a save_model folder) on `device`."""
        return cls(*load_model(model_dir, device), cfg, judges)

    def with_settings(self, **changes) -> "Decoder":
        """The same model and judges with some sampler settings changed (SampleConfig's field names)."""
        return Decoder(self.model, self.vocab, dataclasses.replace(self.cfg, **changes), self.judges)

    def draw(self, rows: Sequence[Mapping], seed: int, edit: bool = False) -> tuple[list[list[str]], np.ndarray]:
        """-> (texts [num_samples][rows], whole: bool [rows], whether each row's whole response fits the model).
        edit: start from each row's own response (`subword_ids`: the candidate's) at cfg.edit_strength; otherwise
        from noise. Draw j is seeded with seed + j."""
        strength = self.cfg.edit_strength if edit else 1.0
        examples = encode_rows(rows, self.vocab, self.model.cfg, gold=strength < 1)
        return draw(self.model, examples, self.cfg, seed, strength), complete(examples, rows)

    def __call__(self, rows: Sequence[Mapping], seed: int, edit: bool = False,
                 group: int = 1) -> list[tuple[int, str]]:
        """One kept text per group of `group` consecutive rows (1: each row alone; the candidates of an example:
        `pipeline.subset.group_size`) -> (index of the row it was drawn for, text), per group."""
        draws, whole = self.draw(rows, seed, edit)
        kept = rerank(draws, rows, self.cfg.rerank, self.judges, group, whole)
        return [(i, draws[d][i]) for i, d in kept]
