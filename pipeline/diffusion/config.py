"""The model and training settings of the diffusion package, one dataclass per params.yaml section: ModelConfig
(`model`, saved with the checkpoint) and TrainConfig (`train`). Each is checked key by key and type by type
(pipeline.params.check) and value by value in __post_init__: a bad setting is one PipelineError line. The sampler's
settings (`sample`) are generate.py's SampleConfig: training does not depend on them."""
from dataclasses import asdict, dataclass
from typing import Literal

from pipeline.errors import PipelineError
from pipeline.labels import SIGNALS
from pipeline.params import check
from pipeline.precision import Bf16

FAMILIES = ("continuous", "masked")
MASKS = ("control_range", "full")  # "full" is the paper's "w/o Mask" ablation
VOCABS = ("reduced", "full")  # output vocabulary: WordPiece ids seen in training responses, or all of them
# The rounding cross-entropy -log p(w | .) with the head tied to the embedding, scored on: "prediction" = the model's x0
# estimate (Difformer's anchor loss), "embedding" = the noisy embedding y0 (DiffuSeq), or "none" (Eq. 7 alone).
ROUNDINGS = ("prediction", "embedding", "none")
MINILM_SHAPE, MINILM_LAYERS = (384, 12, 1536), 6  # all-MiniLM-L6-v2: (width, heads, ffn) and its layers


@dataclass(frozen=True)
class ModelConfig:
    """Defaults are the paper's (appendix A.4: BERT-base sized, 12 layers, width 768, max length 128, T = 2000).

    family: "continuous" = the paper's Gaussian diffusion over token embeddings (x0-parameterised, Eq. 7);
      "masked" = absorbing-state discrete diffusion over WordPieces (MDLM / DiffusionBERT): a response token is
      replaced by [MASK] with probability t / T and the denoiser is trained with cross-entropy on the hidden tokens.
      Both share the sequence layout, the control tokens and the control-range mask (docs/diffusion.md).
    emb_dim: size of the (randomly initialised) token embedding in which continuous diffusion happens.
    width / layers / heads / ffn / dropout: the pre-LN transformer denoiser.
    max_len: the longest sequence (context + separators + control tokens + response + END).
    max_context: the most context WordPiece tokens kept (the oldest are dropped first).
    T / noise_offset: continuous: alpha_bar(t) = 1 - sqrt(t/T + noise_offset); masked: T is the resolution of t.
    mask: "control_range" (paper Eq. 3-6) or "full" attention.
    signals: which control signals enter the sequence (a subset of SIGNALS, kept in coarse-to-fine order).
    vocab: "reduced" or "full" output vocabulary (see Vocab).
    rounding: (continuous) where the rounding cross-entropy added to the Eq. 7 terms is scored (losses.py says why).
    self_condition: (continuous) the denoiser also sees its previous x0 estimate (Chen et al. 2023, "Analog Bits").
    init: (masked) "random", or "minilm": the denoiser is the first `layers` layers of the pretrained MiniLM-L6 encoder
      (BERT's post-LN architecture; width 384, 12 heads, ffn 1536 are then required), its WordPiece embeddings reused
      for context and response tokens and tied to the output head; control tokens get new rows.
    """

    family: Literal["continuous", "masked"] = "continuous"
    emb_dim: int = 128
    width: int = 768
    layers: int = 12
    heads: int = 12
    ffn: int = 3072
    dropout: float = 0.1
    max_len: int = 128
    max_context: int = 64
    T: int = 2000
    schedule: Literal["sqrt"] = "sqrt"
    noise_offset: float = 1e-4
    mask: Literal["control_range", "full"] = "control_range"
    signals: tuple[str, ...] = SIGNALS
    vocab: Literal["reduced", "full"] = "reduced"
    rounding: Literal["prediction", "embedding", "none"] = "embedding"
    self_condition: bool = False
    init: Literal["random", "minilm"] = "random"

    def __post_init__(self):
        # Normalise signals to a tuple in SIGNALS order so that ("sf", "cm") and ["cm", "sf"] mean the same model.
        bad = [s for s in self.signals if s not in SIGNALS]
        if bad:
            raise PipelineError(f"diffusion model config: unknown signals {bad} (any subset of {list(SIGNALS)})")
        object.__setattr__(self, "signals", tuple(s for s in SIGNALS if s in set(self.signals)))
        problems = []
        if self.width % self.heads:
            problems.append(f"width={self.width} is not a multiple of heads={self.heads}")
        if self.T < 1 or self.max_len < 8 or self.max_context < 0:
            problems.append(f"T={self.T}, max_len={self.max_len}, max_context={self.max_context} (need T >= 1, "
                            "max_len >= 8, max_context >= 0)")
        if self.family == "masked" and self.self_condition:
            problems.append("self_condition is a continuous-family option")
        if self.init == "minilm" and (self.family != "masked" or (self.width, self.heads, self.ffn) != MINILM_SHAPE
                                      or not 1 <= self.layers <= MINILM_LAYERS):
            problems.append(f"init=minilm needs family=masked, (width, heads, ffn)={MINILM_SHAPE} and 1 <= layers <= "
                            f"{MINILM_LAYERS}")
        if problems:
            raise PipelineError("diffusion model config: bad " + "; ".join(problems) + ": fix params.yaml")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Build from a params.yaml section or a saved to_dict(); unknown keys are an error (typos hide ablations)."""
        return check(d, cls, "model", defaults=True)

    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready dict (signals as a list)."""
        d = asdict(self)
        d["signals"] = list(self.signals)
        return d


@dataclass(frozen=True)
class TrainConfig:
    """steps: optimizer steps. batch_size: the global batch (split evenly across ranks). lr / weight_decay: AdamW.
    warmup_steps: the lr rises linearly from 0 over these steps; lr_decay: "linear" then anneals it to 0 at `steps`
    (DiffuSeq's lr_anneal_steps), "none" keeps it. Both are functions of the step alone, so a resumed run gets the
    same rates.
    ema_decay: the EMA's decay (warmed up as min(decay, (1 + s) / (10 + s)) so short runs are not stuck at the init).
    grad_clip: max global gradient norm; <= 0 disables it (the paper's -1.0). checkpoint_every_s / _steps: save the
    training state when either has passed since the last save (0 disables that trigger). log_every: steps per loss
    log line. valid_examples: valid-split examples for the final held-out loss of the EMA model and its one-shot
    accuracy per quarter of t; valid_sample_examples (the first of them; 0 = none) are also regenerated from their
    gold controls with valid_sample_steps reverse steps (evaluate.held_out_sampling). max_minutes: stop after this
    much training time (0 = no limit), for fixed CPU-minute budgets; the lr schedule still runs over `steps`.
    bf16: forward and backward passes (and the held-out figures) under bfloat16 autocast, float32 weights and
    optimizer state: true, false or auto (where the device computes bfloat16 natively: pipeline.precision).
    length_group_batches: runs of this many shuffled batches are regrouped by example length (trainer.DataOrder), so
    a batch pads little; 0 = off."""

    steps: int
    batch_size: int
    lr: float = 1e-4
    warmup_steps: int = 0
    lr_decay: Literal["none", "linear"] = "none"
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    grad_clip: float = -1.0
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 0
    log_every: int = 50
    valid_examples: int = 256
    valid_sample_examples: int = 64
    valid_sample_steps: int = 50
    max_minutes: float = 0.0
    bf16: Bf16 = False
    length_group_batches: int = 0

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise PipelineError(f"params.yaml `train`: steps={self.steps}, batch_size={self.batch_size}, lr={self.lr} "
                                "(all must be positive)")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        return check(d, cls, "train", defaults=True)

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        decay = max(0.0, 1 - step / self.steps) if self.lr_decay == "linear" else 1.0
        return self.lr * warm * decay
