"""ModelConfig: the architecture, diffusion and ablation settings of one DiffusEmp model (saved with its checkpoint)."""
from dataclasses import asdict, dataclass, fields

from pipeline.errors import PipelineError

SIGNALS = ("cm", "it", "sf")  # coarse to fine: communication mechanism, intent, semantic frame
MASKS = ("control_range", "full")  # "full" is the paper's "w/o Mask" ablation
VOCABS = ("reduced", "full")  # output vocabulary: WordPiece ids seen in training responses, or all of them
SCHEDULES = ("sqrt",)
# The rounding cross-entropy -log p(w | .) with the head tied to the embedding, scored on: "prediction" = the model's x0
# estimate (Difformer's anchor loss), "embedding" = the noisy embedding y0 (DiffuSeq), or "none" (Eq. 7 alone).
ROUNDINGS = ("prediction", "embedding", "none")


@dataclass(frozen=True)
class ModelConfig:
    """Defaults are the paper's (appendix A.4: BERT-base sized, 12 layers, width 768, max length 128, T = 2000).

    emb_dim: size of the (randomly initialised) token embedding in which diffusion happens.
    width / layers / heads / ffn / dropout: the pre-LN transformer denoiser.
    max_len: the longest sequence (context + separators + control tokens + response + END).
    max_context: the most context WordPiece tokens kept (the oldest are dropped first).
    T / schedule / noise_offset: alpha_bar(t) = 1 - sqrt(t/T + noise_offset).
    mask: "control_range" (paper Eq. 3-6) or "full" attention.
    signals: which control signals enter the sequence (a subset of SIGNALS, kept in coarse-to-fine order).
    vocab: "reduced" or "full" output vocabulary (see Vocab).
    rounding: where the rounding cross-entropy added to the Eq. 7 terms is scored (ROUNDINGS; losses.py says why).
    self_condition: the denoiser also sees its previous x0 estimate (Chen et al. 2023, "Analog Bits"; losses.py).
    """

    emb_dim: int = 128
    width: int = 768
    layers: int = 12
    heads: int = 12
    ffn: int = 3072
    dropout: float = 0.1
    max_len: int = 128
    max_context: int = 64
    T: int = 2000
    schedule: str = "sqrt"
    noise_offset: float = 1e-4
    mask: str = "control_range"
    signals: tuple[str, ...] = SIGNALS
    vocab: str = "reduced"
    rounding: str = "embedding"
    self_condition: bool = False

    def __post_init__(self):
        # Normalise signals to a tuple in SIGNALS order so that ("sf", "cm") and ["cm", "sf"] mean the same model.
        object.__setattr__(self, "signals", tuple(s for s in SIGNALS if s in set(self.signals)))
        problems = []
        if self.mask not in MASKS:
            problems.append(f"mask={self.mask!r} (one of {MASKS})")
        if self.vocab not in VOCABS:
            problems.append(f"vocab={self.vocab!r} (one of {VOCABS})")
        if self.rounding not in ROUNDINGS:
            problems.append(f"rounding={self.rounding!r} (one of {ROUNDINGS})")
        if self.schedule not in SCHEDULES:
            problems.append(f"schedule={self.schedule!r} (one of {SCHEDULES})")
        if self.width % self.heads:
            problems.append(f"width={self.width} is not a multiple of heads={self.heads}")
        if self.T < 1 or self.max_len < 8 or self.max_context < 0:
            problems.append(f"T={self.T}, max_len={self.max_len}, max_context={self.max_context} (need T >= 1, "
                            "max_len >= 8, max_context >= 0)")
        if problems:
            raise PipelineError("diffusion model config: bad " + "; ".join(problems) + ": fix params.yaml")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Build from a params.yaml section or a saved to_dict(); unknown keys are an error (typos hide ablations)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise PipelineError(f"diffusion model config: unknown keys {unknown}; known keys: {sorted(known)}")
        bad = [s for s in d.get("signals", ()) if s not in SIGNALS]
        if bad:
            raise PipelineError(f"diffusion model config: unknown signals {bad} (any subset of {list(SIGNALS)})")
        return cls(**d)

    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready dict (signals as a list)."""
        d = asdict(self)
        d["signals"] = list(self.signals)
        return d
