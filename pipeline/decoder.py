"""One decoder for every caller (stage sample, respond, the benchmark, the decoding sweep): the diffusion model and
its vocab, the sampler's settings (SampleConfig) and the models of the rerank (Judges), the way diffusers'
DiffusionPipeline holds its parts.

One call takes control rows (mappings with `context` and the CONTROL_FIELDS keys), encodes them once, draws
cfg.num_samples texts per row (pipeline.diffusion.generate.draw), pools the draws of each group of consecutive rows
(the candidates of one example), leaves out the draws of rows whose response the model's max_len cut when a row of the
group is whole, and keeps one text per group by cfg.rerank (pipeline.rerank).

Rows with a freed level (a row's `given` leaves out one of the model's signals: a level hand-set in respond frees the
finer ones, and each request of the steering benchmark gives one level alone) are drawn at `steered.temperature`:
guidance does the steering on those rows, and at temperature 1 it fills them with the requested level's marker words
(docs/diffusion.md, "Controls that steer"). Rows that give every level keep cfg.temperature.
"""
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import SampleConfig
from pipeline.diffusion.generate import complete, draw
from pipeline.diffusion.inputs import encode_rows
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.rerank import Judges, rerank


@dataclass(frozen=True)
class SteeredSample:
    """params.yaml `steered_sample`: how the rows with a freed level are drawn, where it differs from `sample`:
    temperature (None: sample.temperature)."""

    temperature: float | None = None


class Decoder:
    """model + vocab: a trained model (`load`); cfg: the sampler's settings; judges: the models cfg.rerank reads
    (`pipeline.judges.load_judges`), checked here, before anything is drawn; steered: the settings of the rows with a
    freed level (module docstring)."""

    def __init__(self, model: nn.Module, vocab: Vocab, cfg: SampleConfig, judges: Judges = Judges(),
                 steered: SteeredSample = SteeredSample()):
        judges.check(cfg.rerank)
        if steered.temperature is not None and steered.temperature < 0:
            raise PipelineError(f"steered_sample.temperature={steered.temperature}: use >= 0 (or null)")
        self.model, self.vocab, self.cfg, self.judges, self.steered = model, vocab, cfg, judges, steered

    @classmethod
    def load(cls, model_dir, cfg: SampleConfig, judges: Judges = Judges(),
             device: str | torch.device = "cpu", steered: SteeredSample = SteeredSample()) -> "Decoder":
        """With the trained model of stage `train_diffusion` (a save_model folder) on `device`."""
        return cls(*load_model(model_dir, device), cfg, judges, steered)

    def with_settings(self, **changes) -> "Decoder":
        """The same model, judges and steered settings with some sampler settings changed (SampleConfig's names)."""
        return Decoder(self.model, self.vocab, dataclasses.replace(self.cfg, **changes), self.judges, self.steered)

    def steered_rows(self, rows: Sequence[Mapping]) -> list[bool]:
        """Whether each row frees a level of the model's signals (its `given` leaves one out)."""
        signals = set(self.model.cfg.signals)
        return [r.get("given") is not None and not signals <= set(r["given"]) for r in rows]

    def draw(self, rows: Sequence[Mapping], seed: int, edit: bool = False) -> tuple[list[list[str]], np.ndarray]:
        """-> (texts [num_samples][rows], whole: bool [rows], whether each row's whole response fits the model).
        edit: start from each row's own response (`subword_ids`: the candidate's) at cfg.edit_strength; otherwise
        from noise. Draw j is seeded with seed + j; the rows with a freed level are drawn apart from the others,
        at steered.temperature."""
        strength = self.cfg.edit_strength if edit else 1.0
        examples = encode_rows(rows, self.vocab, self.model.cfg, gold=strength < 1)
        steered = self.steered_rows(rows)
        if self.steered.temperature is None or not any(steered):
            return draw(self.model, examples, self.cfg, seed, strength), complete(examples, rows)
        texts = [[""] * len(rows) for _ in range(self.cfg.num_samples)]
        settings = {False: self.cfg, True: dataclasses.replace(self.cfg, temperature=self.steered.temperature)}
        for part, cfg in settings.items():
            index = [i for i, s in enumerate(steered) if s == part]
            if not index:
                continue
            for j, drawn in enumerate(draw(self.model, [examples[i] for i in index], cfg, seed, strength)):
                for i, text in zip(index, drawn):
                    texts[j][i] = text
        return texts, complete(examples, rows)

    def __call__(self, rows: Sequence[Mapping], seed: int, edit: bool = False,
                 group: int = 1) -> list[tuple[int, str]]:
        """One kept text per group of `group` consecutive rows (1: each row alone; the candidates of an example:
        `pipeline.subset.group_size`) -> (index of the row it was drawn for, text), per group."""
        draws, whole = self.draw(rows, seed, edit)
        kept = rerank(draws, rows, self.cfg.rerank, self.judges, group, whole)
        return [(i, draws[d][i]) for i, d in kept]
