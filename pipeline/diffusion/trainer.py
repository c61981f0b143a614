"""Training of the DiffusEmp model: AdamW, seeded shuffled batches, EMA weights, resumable checkpoints, optional DDP.

Read top to bottom:
- TrainConfig      the `train` section of params.yaml.
- DataOrder        which examples rank r trains on at step s: a pure function of (seed, step), so a resumed run needs
                   only the step count to continue the exact data order.
- Ema              exponential moving average of the weights (the weights used for sampling).
- Objective        the model + schedule as one nn.Module whose forward is the loss, the unit DDP wraps.
- train            the loop; checkpoints (model, EMA, optimizer, step, every rank's RNG states, loss history) are
                   written atomically every few minutes / steps and at the end, and picked up on the next call.
- held_out_*       the final EMA weights on valid examples: the loss terms, and how well sampling regenerates
                   the gold responses from their own controls.
- encode_rows      controls-like rows -> model inputs (gold responses for training, placeholders for sampling).
- save_model / load_model  the trained model folder (config.json, vocab.json, model.pt with the EMA weights);
  config_fingerprint: what a checkpoint must match to be resumed.

Distributed: under `torchrun`, `init_distributed()` joins the process group (gloo on CPU, nccl on GPU); `train` then
wraps the objective in DistributedDataParallel and every rank trains on its own shard of each global batch. Without
torchrun everything runs in one process.
"""
import hashlib
import json
import os
import time
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.inputs import Batch, Example, collate, encode_example
from pipeline.diffusion.losses import training_loss
from pipeline.diffusion.model import DiffusEmpModel
from pipeline.diffusion.sampler import sample
from pipeline.diffusion.schedule import Schedule
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_json, write_json
from pipeline.progress import log, progress

# Logged per window: the loss terms (rounding unless model.rounding is "none") and the rounding head's token accuracy.
TERMS = ("loss", "mse", "prior", "rounding", "accuracy")
LR_DECAYS = ("none", "linear")


@dataclass(frozen=True)
class TrainConfig:
    """steps: optimizer steps. batch_size: the global batch (split evenly across ranks). lr / weight_decay: AdamW.
    warmup_steps: the lr rises linearly from 0 over these steps; lr_decay: "linear" then anneals it to 0 at `steps`
    (DiffuSeq's lr_anneal_steps), "none" keeps it. Both are functions of the step alone, so a resumed run gets the
    same rates.
    ema_decay: the EMA's decay (warmed up as min(decay, (1 + s) / (10 + s)) so short runs are not stuck at the init).
    grad_clip: max global gradient norm; <= 0 disables it (the paper's -1.0). checkpoint_every_s / _steps: save the
    training state when either has passed since the last save (0 disables that trigger). log_every: steps per loss
    log line / plots row. valid_examples: valid-split examples for the final held-out loss of the EMA model;
    valid_sample_examples (the first of them; 0 = none) are also regenerated from their gold controls with
    valid_sample_steps respaced steps (held_out_sampling)."""

    steps: int
    batch_size: int
    lr: float = 1e-4
    warmup_steps: int = 0
    lr_decay: str = "none"
    weight_decay: float = 0.0
    ema_decay: float = 0.9999
    grad_clip: float = -1.0
    checkpoint_every_s: float = 300.0
    checkpoint_every_steps: int = 0
    log_every: int = 50
    valid_examples: int = 256
    valid_sample_examples: int = 64
    valid_sample_steps: int = 50

    def __post_init__(self):
        if self.lr_decay not in LR_DECAYS:
            raise PipelineError(f"params.yaml `train` section: lr_decay={self.lr_decay!r} (one of {LR_DECAYS})")

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        try:
            return cls(**d)
        except TypeError as err:
            raise PipelineError(f"params.yaml `train` section: {err}") from None

    def lr_at(self, step: int) -> float:
        """The learning rate of optimizer step `step` (0-based)."""
        warm = min(1.0, (step + 1) / self.warmup_steps) if self.warmup_steps > 0 else 1.0
        decay = max(0.0, 1 - step / self.steps) if self.lr_decay == "linear" else 1.0
        return self.lr * warm * decay


# --- distributed helpers -------------------------------------------------------------------------------------------

def init_distributed() -> torch.device:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1) and return this rank's device.

    gloo on CPU, nccl on GPU (one GPU per local rank). On CPU the cores are shared out between the local ranks.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(device)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo")
        if not cuda:
            local = int(os.environ.get("LOCAL_WORLD_SIZE", world))
            torch.set_num_threads(max(1, (os.cpu_count() or 1) // local))
    return device


def rank_and_world() -> tuple[int, int]:
    return (dist.get_rank(), dist.get_world_size()) if dist.is_initialized() else (0, 1)


def any_rank(flag: bool) -> bool:
    """True on every rank if `flag` is true on any rank (so all ranks enter a collective together)."""
    if not dist.is_initialized():
        return flag
    t = torch.tensor([int(flag)], device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


# --- data order ----------------------------------------------------------------------------------------------------

class DataOrder:
    """Shuffled batches without replacement, one fresh permutation per epoch, sharded across ranks.

    Epoch e is torch.randperm(n) drawn from a generator seeded with (seed, e); global batch k of the epoch is the
    slice [k * batch_size, (k + 1) * batch_size) of it (the tail that does not fill a batch is left out of that epoch),
    and rank r trains on its r-th strided share. The ranks' shares are disjoint and together they are the
    single-process batch, so the data seen does not depend on the number of ranks.
    """

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        if batch_size % world or n < batch_size:
            raise PipelineError(f"batch_size={batch_size} must be a multiple of the {world} ranks and at most the "
                                f"{n} training examples: fix params.yaml `train.batch_size`")
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_epoch = n // batch_size
        self._epoch, self._perm = -1, None

    def position(self, step: int) -> tuple[int, int]:
        """(epoch, batch index within the epoch) of optimizer step `step` (0-based)."""
        return divmod(step, self.per_epoch)

    def indices(self, step: int) -> list[int]:
        """Example indices this rank trains on at `step`: batch_size / world of them."""
        epoch, k = self.position(step)
        if epoch != self._epoch:  # one permutation per epoch, drawn once
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        batch = self._perm[k * self.batch_size:(k + 1) * self.batch_size]
        return batch[self.rank::self.world].tolist()


# --- EMA and the loss module ---------------------------------------------------------------------------------------

class Ema:
    """Shadow copy of the model's parameters: ema <- d * ema + (1 - d) * param after every optimizer step."""

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: p.detach().clone() for k, p in model.named_parameters()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """`step`: optimizer steps taken so far (>= 1); early steps use a smaller decay (warm-up)."""
        d = min(self.decay, (1 + step) / (10 + step))
        params = dict(model.named_parameters())
        shadow = list(self.shadow.values())
        torch._foreach_lerp_(shadow, [params[k].detach() for k in self.shadow], 1 - d)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for k, v in state.items():
            self.shadow[k].copy_(v)

    def weights(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """The model's state dict with the EMA values in place of the parameters (buffers as they are)."""
        return {**model.state_dict(), **{k: v.clone() for k, v in self.shadow.items()}}


class Objective(nn.Module):
    """forward(batch, generator) = training_loss(model, batch, schedule, generator=generator).

    DDP needs the module whose forward produces the loss; the loss reads the model's embedding and rounding head
    besides its forward, so the whole objective is that module.
    """

    def __init__(self, model: DiffusEmpModel, schedule: Schedule):
        super().__init__()
        self.model, self.schedule = model, schedule

    def forward(self, batch: Batch, generator: torch.Generator) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        return training_loss(self.model, batch, self.schedule, generator=generator)


# --- checkpoints ---------------------------------------------------------------------------------------------------

def rng_state(generator: torch.Generator) -> dict:
    """Every random state one rank's training draws from: the loss's noise generator and the global torch RNGs
    (dropout)."""
    state = {"generator": generator.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(generator: torch.Generator, state: dict) -> None:
    generator.set_state(state["generator"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"])


def examples_digest(examples: list[Example]) -> str:
    """sha256 of the encoded training data (ids and structure of every example, in order): a checkpoint trained on
    other data must not be resumed."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps([ex.ids, ex.role, ex.sent, ex.word]).encode())
    return h.hexdigest()


def load_checkpoint(path: Path, fingerprint: dict) -> dict | None:
    """The saved training state at `path`, or None when there is none or it belongs to other settings."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        log(f"[train] {path} was written with other settings or data: starting from step 0")
        return None
    return state


# --- the loop ------------------------------------------------------------------------------------------------------

@dataclass
class TrainResult:
    """ema: the EMA state dict (what save_model writes). history: one dict per log point (step, TERMS means over the
    window, examples_per_s). summary: the figures of metrics/train.json."""

    ema: dict[str, torch.Tensor]
    history: list[dict]
    summary: dict


def train(model: DiffusEmpModel, examples: list[Example], schedule: Schedule, cfg: TrainConfig, seed: int,
          checkpoint: Path, fingerprint: dict, valid: list[Example] = ()) -> TrainResult:
    """Train `model` (already on its device, identically initialised on every rank) on `examples`.

    Resumes from `checkpoint` when it holds a state with the same `fingerprint` (everything the run depends on except
    the step count, so raising `steps` continues a finished run) and at most cfg.steps steps; writes it atomically
    (rank 0) every cfg.checkpoint_every_s seconds / cfg.checkpoint_every_steps steps and at the end.
    `valid`: examples for the held-out loss of the final EMA weights (fixed timesteps and noise, dropout off).
    """
    rank, world = rank_and_world()
    device = next(model.parameters()).device
    order = DataOrder(len(examples), cfg.batch_size, seed, rank, world)
    objective = Objective(model, schedule)
    net = DistributedDataParallel(objective) if world > 1 else objective
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    ema = Ema(model, cfg.ema_decay)
    # Each rank draws its own noise and dropout; both streams are part of the checkpoint.
    generator = torch.Generator(device).manual_seed(seed * 1000 + rank)
    torch.manual_seed(seed * 1000 + rank)
    fingerprint = {**fingerprint, "world": world, "batch_size": cfg.batch_size, "data": examples_digest(examples)}

    start, history = 0, []
    state = load_checkpoint(Path(checkpoint), fingerprint)
    if state is not None and state["step"] > cfg.steps:
        log(f"[train] {checkpoint} is at step {state['step']} > steps={cfg.steps}: starting from step 0")
        state = None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        ema.load_state_dict(state["ema"])
        set_rng_state(generator, state["rng"][rank])
        start, history = state["step"], state["history"]
        if rank == 0:
            log(f"[train] resumed from {checkpoint} at step {start} (epoch, batch = {order.position(start)})")

    def save(step: int) -> None:
        rngs = [None] * world
        if world > 1:
            dist.all_gather_object(rngs, rng_state(generator))
        else:
            rngs = [rng_state(generator)]
        if rank == 0:
            with atomic_path(checkpoint, ".pt") as tmp:
                torch.save({"fingerprint": fingerprint, "step": step, "position": order.position(step),
                            "model": model.state_dict(), "optimizer": opt.state_dict(), "ema": ema.state_dict(),
                            "rng": rngs, "history": history}, tmp)

    model.train()
    sums, n_window, ex_window, t_window = {}, 0, 0, time.monotonic()
    t_start = last_save = time.monotonic()
    steps = range(start, cfg.steps)
    for step in progress(steps, desc="train", every_s=60.0) if rank == 0 else steps:
        batch = collate([examples[i] for i in order.indices(step)]).to(device)
        loss, terms = net(batch, generator)
        for group in opt.param_groups:
            group["lr"] = cfg.lr_at(step)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        done = step + 1
        ema.update(model, done)
        for k, v in terms.items():
            sums[k] = sums.get(k, 0.0) + v  # tensors: no device sync per step
        n_window, ex_window = n_window + 1, ex_window + len(batch) * world

        if done % cfg.log_every == 0 or done == cfg.steps:
            history.append({**_log_point(done, sums, n_window, ex_window, time.monotonic() - t_window),
                            "lr": cfg.lr_at(step)})
            if rank == 0:
                h = history[-1]
                log(f"[train] step {done}/{cfg.steps} " + " ".join(f"{k} {h[k]:.4f}" for k in TERMS if k in h)
                    + f" | lr {h['lr']:.2e} | {h['examples_per_s']:.1f} examples/s")
            sums, n_window, ex_window, t_window = {}, 0, 0, time.monotonic()
        now = time.monotonic()
        due = ((cfg.checkpoint_every_s > 0 and now - last_save >= cfg.checkpoint_every_s)
               or (cfg.checkpoint_every_steps > 0 and done % cfg.checkpoint_every_steps == 0))
        if any_rank(due) and done < cfg.steps:
            save(done)
            last_save = time.monotonic()
    train_s = time.monotonic() - t_start
    save(cfg.steps)

    summary = {"steps": cfg.steps, "resumed_from_step": start, "world_size": world, "device": str(device),
               "batch_size": cfg.batch_size, "parameters": sum(p.numel() for p in model.parameters()),
               "train_examples": len(examples), "epochs": round(cfg.steps * cfg.batch_size / len(examples), 3),
               "wall_s_this_run": round(train_s, 1),
               "examples_per_s_this_run": round((cfg.steps - start) * cfg.batch_size / train_s, 2) if train_s else None,
               "final": {k: history[-1][k] for k in TERMS if history and k in history[-1]}}
    if valid and rank == 0:
        summary["valid"] = held_out_loss(model, ema, schedule, valid, cfg.batch_size, seed)
        if cfg.valid_sample_examples > 0:
            summary["valid_sampling"] = held_out_sampling(model, ema, schedule, valid[:cfg.valid_sample_examples],
                                                          cfg.batch_size, cfg.valid_sample_steps, seed)
    return TrainResult(ema.weights(model), history, summary)


def _log_point(step: int, sums: dict, n: int, examples: int, seconds: float) -> dict:
    """Mean of each term over the window (averaged over ranks too) and the window's examples/s."""
    keys = sorted(sums)
    means = torch.stack([sums[k].float() for k in keys]) / n  # [n_terms]
    if dist.is_initialized():
        dist.all_reduce(means)
        means /= dist.get_world_size()
    return {"step": step, **{k: round(float(v), 6) for k, v in zip(keys, means)},
            "examples_per_s": round(examples / seconds, 2) if seconds > 0 else None}


@contextmanager
def ema_weights(model: DiffusEmpModel, ema: Ema):
    """Run the block with the EMA weights loaded and dropout off; the model's own weights and mode come back after."""
    own = {k: v.clone() for k, v in model.state_dict().items()}
    was_training = model.training
    model.load_state_dict(ema.weights(model))
    model.eval()
    try:
        yield model
    finally:
        model.load_state_dict(own)
        model.train(was_training)


@torch.no_grad()
def held_out_loss(model: DiffusEmpModel, ema: Ema, schedule: Schedule, examples: list[Example], batch_size: int,
                  seed: int) -> dict:
    """Loss terms of the EMA weights on `examples`, with timesteps and noise from a fixed seed and dropout off, so the
    figure is comparable between runs. -> {"examples": n, term: mean over examples}"""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    sums, n = {}, 0
    with ema_weights(model, ema):
        for i in range(0, len(examples), batch_size):
            chunk = examples[i:i + batch_size]
            _, terms = training_loss(model, collate(chunk).to(device), schedule, generator=generator)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * len(chunk)
            n += len(chunk)
    return {"examples": n, **{k: round(v / n, 6) for k, v in sums.items()}}


@torch.no_grad()
def held_out_sampling(model: DiffusEmpModel, ema: Ema, schedule: Schedule, examples: list[Example], batch_size: int,
                      steps: int, seed: int) -> dict:
    """How well the EMA weights regenerate held-out responses from their own (gold) controls: each example's response
    is sampled (`steps` respaced reverse steps, at most T; noise from a fixed seed) and compared with the gold
    WordPieces position by position; a missing or extra token counts as wrong.
    -> {"examples", "steps", "token_accuracy": matches / max(len(gold), len(generated)) averaged over examples,
        "exact": share of examples regenerated exactly}"""
    device = next(model.parameters()).device
    generator = torch.Generator(device).manual_seed(seed)
    steps = min(steps, len(schedule))  # a small test profile may have fewer than `steps` diffusion steps
    accuracy, exact = [], []
    with ema_weights(model, ema):
        for i in range(0, len(examples), batch_size):
            batch = collate(examples[i:i + batch_size]).to(device)  # the gold ids at response positions are replaced
            generated = sample(model, batch, schedule, steps, generator=generator)  # by noise before the first step
            gold = batch.ids[batch.is_response].split(batch.is_response.sum(1).tolist())
            for gen, ref in zip(generated, gold):
                ref = ref[:-1].tolist()  # without END
                accuracy.append(sum(a == b for a, b in zip(gen, ref)) / max(len(gen), len(ref), 1))
                exact.append(gen == ref)
    n = len(accuracy)
    return {"examples": n, "steps": steps, "token_accuracy": round(sum(accuracy) / max(n, 1), 4),
            "exact": round(sum(exact) / max(n, 1), 4)}


# --- inputs --------------------------------------------------------------------------------------------------------

def encode_rows(rows: list[Mapping], vocab: Vocab, cfg: ModelConfig, gold: bool = True) -> list[Example]:
    """Encode controls-like rows (mappings with `context` and the CONTROL_FIELDS keys) as model inputs.

    gold: the row's own response (`subword_ids`) fills the response positions (training, held-out loss); otherwise
    they are placeholders to generate (sampling from a control source).
    """
    return [encode_example(r["context"], r, vocab, cfg, r["subword_ids"] if gold else None)
            for r in progress(rows, desc="encode", every_s=30.0)]


# --- the trained model folder --------------------------------------------------------------------------------------

def save_model(out_dir, weights: dict[str, torch.Tensor], cfg: ModelConfig, vocab: Vocab) -> None:
    """Write out_dir/{config.json, vocab.json, model.pt} (model.pt: the state dict `weights`, e.g. TrainResult.ema)."""
    out_dir = Path(out_dir)
    write_json(out_dir / "config.json", cfg.to_dict())
    vocab.save(out_dir / "vocab.json")
    with atomic_path(out_dir / "model.pt", ".pt") as tmp:
        torch.save(weights, tmp)


def load_model(model_dir, device: str | torch.device = "cpu") -> tuple[DiffusEmpModel, Vocab]:
    """The trained model (EMA weights, eval mode) and its vocab from a save_model folder."""
    model_dir = Path(model_dir)
    cfg = ModelConfig.from_dict(read_json(model_dir / "config.json", stage="train_diffusion"))
    vocab = Vocab.load(model_dir / "vocab.json")
    if not (model_dir / "model.pt").exists():
        raise PipelineError(f"{model_dir / 'model.pt'} not found: build it with `dvc repro train_diffusion`")
    model = DiffusEmpModel(cfg, vocab)
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
    return model.to(device).eval(), vocab


def config_fingerprint(model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int, vocab: Vocab) -> dict:
    """What a checkpoint must match to be resumed: model and training settings (except the step count and the
    checkpoint / log cadence), the seed and the vocab."""
    keep = {k: v for k, v in asdict(train_cfg).items()
            if k not in ("steps", "checkpoint_every_s", "checkpoint_every_steps", "log_every", "valid_examples",
                         "valid_sample_examples", "valid_sample_steps")}
    vocab_json = json.dumps([vocab.wordpiece_size, vocab.tokens, vocab.out_ids])
    return {"model": model_cfg.to_dict(), "train": keep, "seed": seed,
            "vocab": hashlib.sha256(vocab_json.encode()).hexdigest()}
