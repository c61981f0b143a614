"""The settings of the diffusion package, one dataclass per params.yaml section: ModelConfig (`model`, saved with the
checkpoint), TrainConfig (`train`) and SampleConfig (`sample`). Each is checked key by key and type by type
(pipeline.params.check) and value by value in __post_init__: a bad setting is one PipelineError line."""
import dataclasses
from dataclasses import asdict, dataclass
from typing import Literal, get_args

from pipeline.errors import PipelineError
from pipeline.labels import SIGNALS
from pipeline.params import check
from pipeline.precision import Bf16

MASKS = ("control_range", "full")  # "full" is the paper's "w/o Mask" ablation
# Which of several draws is kept (pipeline.rerank): the first, the MBR choice, the most fluent, the one that keeps its
# controls, or the most fluent and relevant. RERANKS lists them for messages.
Rerank = Literal["none", "mbr", "fluency", "controls", "relevance"]
RERANKS = get_args(Rerank)
MINILM_SHAPE, MINILM_LAYERS = (384, 12, 1536), 6  # all-MiniLM-L6-v2: (width, heads, ffn) and its layers


# ModelConfig options newer than saved models, and their defaults
ADDED_LATER = {"noise_factor": 1.0, "soft_absorb": False, "t_min": 1, "evidence": False}


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
    init: "random", or "minilm": the denoiser is the first `layers` layers of the pretrained MiniLM-L6 encoder
      (BERT's post-LN architecture; width 384, 12 heads, ffn 1536 are then required), its WordPiece embeddings reused
      for context and response tokens and tied to the output head; control tokens get new rows. For the continuous
      family (emb_dim 384) the diffusion space is those embeddings standardised per dimension and frozen
      (model.ContinuousMiniLMModel).
    noise_factor: (continuous, init minilm) the diffusion space is divided by it: F times more noise for the same
      schedule (Difformer's noise factor), so the noise outgrows the distance between neighbouring tokens earlier.
    soft_absorb: (continuous, init minilm) DiffuSeq-v2's soft absorbing state: before noising, each response position's
      clean embedding is replaced by a learned point m of the diffusion space (initialised at WordPiece [MASK]) with
      probability t / T, and the chain starts from q(x_T | m); the targets stay the gold tokens.
    t_min: (continuous) the smallest diffusion time trained and sampled (DINOISER's clipped t): training draws t from
      t_min..T, the sampler's last step predicts x0 at t_min; 1 = the whole schedule.
    evidence: (continuous, init minilm) the head's logits plus each output token's Gaussian log-likelihood of x_t,
      log N(x_t; sqrt(alpha_bar_t) e_w, (1 - alpha_bar_t) I) up to a constant: what x_t alone says about w (the
      model-free decoder of pipeline/diffusion/space.py), so the network learns only what the context adds.
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
    noise_factor: float = 1.0
    soft_absorb: bool = False
    t_min: int = 1
    evidence: bool = False

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
        if self.init == "minilm" and ((self.width, self.heads, self.ffn) != MINILM_SHAPE
                                      or not 1 <= self.layers <= MINILM_LAYERS):
            problems.append(f"init=minilm needs (width, heads, ffn)={MINILM_SHAPE} and 1 <= layers <= {MINILM_LAYERS}")
        continuous_minilm = self.family == "continuous" and self.init == "minilm"
        if continuous_minilm and (self.emb_dim != self.width or self.self_condition):
            problems.append(f"the continuous family on MiniLM diffuses in its embedding space: emb_dim={self.width} "
                            "and no self_condition")
        if self.noise_factor <= 0 or (self.noise_factor != 1.0 and not continuous_minilm):
            problems.append(f"noise_factor={self.noise_factor}: a positive number, and 1 except for family=continuous "
                            "with init=minilm")
        if (self.soft_absorb or self.evidence) and not continuous_minilm:
            problems.append("soft_absorb and evidence are options of family=continuous with init=minilm")
        if not 1 <= self.t_min <= self.T or (self.t_min > 1 and self.family != "continuous"):
            problems.append(f"t_min={self.t_min}: in 1..T={self.T}, and 1 except for family=continuous")
        if problems:
            raise PipelineError("diffusion model config: bad " + "; ".join(problems) + ": fix params.yaml")

    @classmethod
    def from_dict(cls, d: dict) -> "ModelConfig":
        """Build from a saved to_dict() (a model's config.json; a key it predates takes its default); unknown keys are
        an error. params.yaml's `model` section is read strictly, by pipeline.params.section."""
        return check(d, cls, "model", defaults=True)

    def to_dict(self) -> dict:
        """Plain JSON/YAML-ready dict (signals as a list). The options of ADDED_LATER are left out at their defaults,
        so a model that does not use them keeps the config (and the checkpoint fingerprint) it was saved with."""
        d = asdict(self)
        for key, default in ADDED_LATER.items():
            if d[key] == default:
                del d[key]
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
    a batch pads little; 0 = off.
    given_levels / given_weights: condition dropout (trainer.LevelDropout): each training example gives the model one
    of these subsets of the control levels, drawn with these weights, and the levels it does not give are freed
    (inputs.free_levels), so the model learns p(response | context, any of the subsets). Empty: every example gives
    all of the model's levels (the paper)."""

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
    given_levels: tuple[tuple[str, ...], ...] = ()
    given_weights: tuple[float, ...] = ()

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.lr <= 0:
            raise PipelineError(f"params.yaml `train`: steps={self.steps}, batch_size={self.batch_size}, lr={self.lr} "
                                "(all must be positive)")
        bad = sorted({s for levels in self.given_levels for s in levels} - set(SIGNALS))
        object.__setattr__(self, "given_levels", tuple(tuple(s for s in SIGNALS if s in set(levels))
                                                       for levels in self.given_levels))  # coarse to fine
        object.__setattr__(self, "given_weights", tuple(self.given_weights))
        if (bad or len(self.given_levels) != len(self.given_weights) or any(w < 0 for w in self.given_weights)
                or (self.given_weights and sum(self.given_weights) <= 0)):
            raise PipelineError(f"params.yaml `train`: given_levels {list(map(list, self.given_levels))} with "
                                f"given_weights {list(self.given_weights)}: one non-negative weight per subset of "
                                f"{list(SIGNALS)}, not all zero")

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        decay = max(0.0, 1 - step / self.steps) if self.lr_decay == "linear" else 1.0
        return self.lr * warm * decay


@dataclass(frozen=True)
class SampleConfig:
    """params.yaml `sample`: which examples are generated and how.

    split / subset: the examples (subset seeded; null = the whole split). steps: reverse steps (continuous: null = the
    full T-step ancestral sampler, fewer = respaced; masked: unmasking steps, null = one token per step). clamp:
    (continuous) clamp the predicted x0 to the nearest embedding at every step. temperature: (masked) 0 = the most
    probable token, > 0 = Gumbel sampling at that temperature. solver: (continuous) the reverse process,
    sampler.SOLVERS: ancestral or dpm++2m (DPM-Solver++, deterministic). edit_strength: the `edit` mode starts from each
    candidate's own response at this strength (sampler.py; 1 = from noise). num_samples: seeded draws per control
    row, of which `rerank` keeps one (RERANKS). candidates: how many of each example's retrieved candidates the
    `retrieved` mode generates from (rank < candidates; null = all retrieve.k); edit_candidates: the same for the
    `edit` mode. The draws of all of an example's candidates compete in one rerank, which keeps one text per example
    (with `rerank` none: draw 0 of the first candidate). batch_size: control rows per forward pass, each with all its
    num_samples draws. bf16: run the denoiser under bfloat16 autocast (float32 probabilities): true, false or auto
    (where the device computes bfloat16 natively).
    guidance: (masked) classifier-free guidance weight w on the given control levels: logits = l_free + w (l_given -
    l_free), where l_free reads the same row with every level freed (inputs.free_levels); 1 = no guidance (one pass).
    guidance_start: the share of the unmasking steps run without guidance before it starts (0 = from the first).
    """

    split: Literal["train", "valid", "test"]
    subset: int | None
    steps: int | None
    clamp: bool
    temperature: float
    solver: Literal["ancestral", "dpm++2m"]
    edit_strength: float
    num_samples: int
    rerank: Rerank
    candidates: int | None
    edit_candidates: int | None
    batch_size: int
    bf16: Bf16
    guidance: float = 1.0
    guidance_start: float = 0.0

    def __post_init__(self):
        if self.guidance < 0 or not 0 <= self.guidance_start < 1:
            raise PipelineError(f"sample settings: guidance={self.guidance}, guidance_start={self.guidance_start} "
                                "(guidance >= 0, 1 = none; guidance_start in [0, 1))")
        if ((self.steps is not None and self.steps < 1) or self.batch_size < 1 or self.temperature < 0
                or not 0 < self.edit_strength <= 1 or self.num_samples < 1 or self.rerank not in RERANKS
                or any(c is not None and c < 1 for c in (self.candidates, self.edit_candidates))):
            raise PipelineError(f"sample settings (params.yaml `sample`, respond's options): steps={self.steps}, "
                                f"batch_size={self.batch_size}, temperature={self.temperature}, edit_strength="
                                f"{self.edit_strength}, num_samples={self.num_samples}, rerank={self.rerank}, "
                                f"candidates={self.candidates}, edit_candidates={self.edit_candidates} (steps, "
                                "batch_size, num_samples, candidates, edit_candidates >= 1; temperature >= 0; "
                                f"edit_strength in (0, 1]; rerank one of {', '.join(RERANKS)})")

    def for_edit(self) -> "SampleConfig":
        """The settings of the `edit` mode: its candidates are edit_candidates."""
        return dataclasses.replace(self, candidates=self.edit_candidates)

    def candidates_of(self, k: int) -> int:
        """How many of an example's k candidates are generated from (candidates null: all k)."""
        return min(self.candidates or k, k)
