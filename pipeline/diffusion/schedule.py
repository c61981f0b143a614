"""The forward processes: the continuous family's sqrt alpha_bar schedule (Diffusion-LM) with q(x_t | x_0), the
x0-parameterised posterior and respacing; and the masked family's hiding of response tokens (`hide`).

Steps are numbered 1..K (K = T for the full schedule); step 0 is clean data (alpha_bar = 1). `timesteps[i]` is the
original diffusion time of step i, which is what the model's timestep embedding sees, so a respaced schedule (few
steps) runs the same model: its step i jumps from timesteps[i] to timesteps[i - 1] with
beta_i = 1 - alpha_bar(timesteps[i]) / alpha_bar(timesteps[i - 1]) (the posterior of that jump), not with the
single-step beta of the original schedule (the authors' skipping bug, anchors.md section 1).
"""
from collections.abc import Sequence

import torch

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import Batch
from pipeline.errors import PipelineError

MAX_BETA = 0.999  # sqrt alpha_bar reaches 0 just before t = T; clip the last betas as Diffusion-LM / DiffuSeq do


# Where noise comes from: one generator (or torch's default, None), or one generator per draw of a batch that stacks
# several draws of the same rows, draw-major (`noise`).
Generators = torch.Generator | Sequence[torch.Generator] | None


def noise(shape: Sequence[int], generators: Generators, device, normal: bool, dtype=torch.float32,
          parts: Sequence[int] | None = None) -> torch.Tensor:
    """Standard normal (normal) or uniform [0, 1) noise of `shape`, drawn on each generator's own device, on `device`.

    A sequence of n generators splits dim 0 into n parts (`parts`: their sizes; default n equal parts), part j drawn
    from generators[j] alone: in a batch that stacks n draws of the same rows, draw j gets exactly the numbers a batch
    of draw j alone would get from that generator.
    """
    gens = list(generators) if isinstance(generators, Sequence) else [generators]
    if parts is None:
        if shape[0] % len(gens):
            raise ValueError(f"noise: dim 0 of {tuple(shape)} does not split into {len(gens)} equal draws")
        parts = [shape[0] // len(gens)] * len(gens)
    if len(parts) != len(gens) or sum(parts) != shape[0]:
        raise ValueError(f"noise: parts {list(parts)} for {len(gens)} generators and dim 0 of {tuple(shape)}")
    draw = torch.randn if normal else torch.rand
    return torch.cat([draw((n, *shape[1:]), generator=g, device=g.device if g is not None else device,
                           dtype=dtype).to(device) for n, g in zip(parts, gens)])


def randn_like(x: torch.Tensor, generators: Generators) -> torch.Tensor:
    """Standard normal noise shaped like x (`noise`: one generator, or one per stacked draw)."""
    return noise(x.shape, generators, x.device, normal=True, dtype=x.dtype)


def hide(batch: Batch, rate: torch.Tensor, mask_id: int, generators: Generators) -> tuple[torch.Tensor, torch.Tensor]:
    """The forward process of the masked family: each response position hidden with probability rate [B] (in [0, 1]).
    -> (ids [B, L] with mask_id at the hidden positions, hidden [B, L] bool)."""
    u = noise(batch.ids.shape, generators, batch.ids.device, normal=False)  # [B, L]
    hidden = (u < rate[:, None]) & batch.is_response
    return torch.where(hidden, torch.full_like(batch.ids, mask_id), batch.ids), hidden


def sqrt_alpha_bar(T: int, offset: float = 1e-4) -> torch.Tensor:
    """alpha_bar at t = 0..T, float64 [T + 1]: 1 at t = 0, 1 - sqrt(t/T + offset) after, with every single-step beta
    clipped to MAX_BETA (so alpha_bar stays positive and decreasing)."""
    t = torch.arange(T + 1, dtype=torch.float64)
    f = 1 - torch.sqrt(t / T + offset)
    f[0] = 1.0
    betas = (1 - f[1:] / f[:-1]).clamp(max=MAX_BETA)  # [T]
    return torch.cat([torch.ones(1, dtype=torch.float64), torch.cumprod(1 - betas, 0)])


def log_likelihood(x_t: torch.Tensor, emb: torch.Tensor, alpha_bar: float | torch.Tensor) -> torch.Tensor:
    """log q(x_t | x_0 = e_w) + a constant, for every row e_w of emb: x_t [N, E], emb [V, E], alpha_bar a float or
    [N, 1] -> [N, V] = (sqrt(a) x_t . e_w - a ||e_w||^2 / 2) / (1 - a). Its argmax is the model-free decoder of x_t."""
    return (alpha_bar ** 0.5 * (x_t @ emb.T) - alpha_bar / 2 * (emb ** 2).sum(-1)) / (1 - alpha_bar)


class Schedule:
    """A schedule over K steps. Tensors indexed by step i in 0..K (index 0 = clean data), float64 on the CPU:
    timesteps [K+1] (original t of each step, timesteps[0] = 0), alpha_bar [K+1], betas [K+1] (betas[0] = 0),
    posterior_var / posterior_c0 / posterior_ct [K+1] for q(x_{i-1} | x_i, x_0) = N(c0 x_0 + ct x_i, var)."""

    def __init__(self, T: int, offset: float = 1e-4, timesteps: torch.Tensor | None = None):
        """The sqrt schedule with T steps; `timesteps` (ascending, in 1..T, ending at T) keeps only those steps."""
        self.T, self.offset = T, offset
        full = sqrt_alpha_bar(T, offset)
        kept = torch.arange(1, T + 1) if timesteps is None else torch.as_tensor(timesteps, dtype=torch.long)
        if kept[-1] != T or bool((kept[1:] <= kept[:-1]).any()) or kept[0] < 1:
            raise ValueError(f"timesteps must ascend within 1..{T} and end at {T}")
        self.timesteps = torch.cat([torch.zeros(1, dtype=torch.long), kept])
        # Diffusion-LM's q(x_0 | w) = N(EMB(w), (1 - alpha_bar(1)) I): the original t = 1's noise, whatever is kept.
        self.data_sigma = float((1 - full[1]).sqrt())
        ab = full[self.timesteps]
        ab_prev = torch.cat([torch.ones(1, dtype=torch.float64), ab[:-1]])
        self.alpha_bar = ab
        self.betas = 1 - ab / ab_prev  # betas[0] = 0
        one_minus = (1 - ab).clamp(min=1e-20)  # step 0 is never a posterior target; avoid 0/0 there
        self.posterior_var = self.betas * (1 - ab_prev) / one_minus
        self.posterior_c0 = self.betas * ab_prev.sqrt() / one_minus
        self.posterior_ct = (1 - ab_prev) * (1 - self.betas).sqrt() / one_minus
        # DPM-Solver++ (`dpm_update`): lambda = log(alpha / sigma) per step (+inf at step 0, the clean data) and, for
        # the jump from step i to i - 1: h = lambda_{i-1} - lambda_i (inf for i = 1), sigma_{i-1} / sigma_i, and
        # alpha_{i-1} (1 - exp(-h)); index 0 is never a jump.
        alpha, sigma, zero = ab.sqrt(), (1 - ab).clamp(min=0).sqrt(), torch.zeros(1, dtype=torch.float64)
        self.log_snr = alpha.log() - sigma.log()
        self.dpm_h = torch.cat([zero, self.log_snr[:-1] - self.log_snr[1:]])
        self.dpm_ratio = torch.cat([zero, sigma[:-1] / sigma[1:]])
        self.dpm_gain = torch.cat([zero, alpha[:-1] * -torch.expm1(-self.dpm_h[1:])])

    @classmethod
    def from_config(cls, cfg: ModelConfig) -> "Schedule":
        """The training schedule of a model: its steps t_min..T and noise_offset."""
        return cls(cfg.T, cfg.noise_offset, torch.arange(cfg.t_min, cfg.T + 1) if cfg.t_min > 1 else None)

    def __len__(self) -> int:
        """K: the number of reverse steps."""
        return len(self.timesteps) - 1

    def respace(self, steps: int) -> "Schedule":
        """`steps` evenly spaced steps of this schedule's span t_min..T (always including t = T); steps = len(self)
        gives this schedule."""
        if not 1 <= steps <= len(self):
            raise PipelineError(f"respaced steps must be in 1..{len(self)} (the schedule's steps), got {steps}: "
                                "fix sample.steps (null = all of them)")
        low = int(self.timesteps[1])  # t_min
        span = torch.linspace(self.T - low + 1, 0, steps + 1, dtype=torch.float64)[:-1].round().long().flip(0)
        return Schedule(self.T, self.offset, (low - 1 + span).clamp(min=low))  # [steps]

    def _at(self, arr: torch.Tensor, step: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """arr[step] as `like`'s dtype/device, shaped [B, 1, 1] to broadcast over [B, L, E]."""
        return arr.to(like.device)[step].to(like.dtype)[:, None, None]

    def q_sample(self, x0: torch.Tensor, step: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_i = sqrt(alpha_bar_i) x0 + sqrt(1 - alpha_bar_i) noise. x0, noise [B, L, E]; step [B] in 1..K."""
        return self._at(self.alpha_bar.sqrt(), step, x0) * x0 + self._at((1 - self.alpha_bar).sqrt(), step, x0) * noise

    def posterior(self, x0: torch.Tensor, x_t: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [B, L, E] and variance [B, 1, 1] of q(x_{i-1} | x_i, x0); at step 1 the mean is x0, the variance 0."""
        mean = self._at(self.posterior_c0, step, x0) * x0 + self._at(self.posterior_ct, step, x0) * x_t
        return mean, self._at(self.posterior_var, step, x0)

    def dpm_update(self, x_t: torch.Tensor, d: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """One step of DPM-Solver++ (Lu et al. 2022, data prediction) from step i to i - 1, given the data estimate d:
        x_{i-1} = (sigma_{i-1} / sigma_i) x_i + alpha_{i-1} (1 - exp(-h)) d with h = lambda_{i-1} - lambda_i, the
        exact solution of the probability-flow ODE over that step when the x0 prediction is constant (= d) on it; at
        step 1 it is d itself. x_t, d [B, L, E]; step [B] in 1..K."""
        return self._at(self.dpm_ratio, step, x_t) * x_t + self._at(self.dpm_gain, step, x_t) * d

    def model_time(self, step: torch.Tensor) -> torch.Tensor:
        """The original diffusion time t of each step [B], the model's timestep input."""
        return self.timesteps.to(step.device)[step]

