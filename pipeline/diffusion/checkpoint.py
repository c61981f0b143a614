"""What is written to disk: the resumable training state and the trained model folder.

- Training state (a .pt file, written atomically): model, EMA, optimizer, step, every rank's RNG states and the loss
  history, under a fingerprint of everything the run depends on except the step count, so a resumed run continues
  the exact same computation and a state of other settings or data is never resumed.
- The trained model folder (save_model / load_model): config.json, vocab.json and model.pt with the EMA weights; the
  only thing inference reads.
"""
import hashlib
import json
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn

from pipeline.diffusion.config import ModelConfig, TrainConfig
from pipeline.diffusion.inputs import Example
from pipeline.diffusion.model import build_model
from pipeline.diffusion.vocab import Vocab
from pipeline.errors import PipelineError
from pipeline.io import atomic_path, read_json, write_json
from pipeline.progress import log

# Settings that change how often things are saved, logged or evaluated, not what is trained.
CADENCE = ("steps", "checkpoint_every_s", "checkpoint_every_steps", "log_every", "valid_examples",
           "valid_sample_examples", "valid_sample_steps", "max_minutes")


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


def config_fingerprint(model_cfg: ModelConfig, train_cfg: TrainConfig, seed: int, vocab: Vocab) -> dict:
    """What a checkpoint must match to be resumed: model and training settings (except the CADENCE ones), the seed
    and the vocab."""
    keep = {k: v for k, v in asdict(train_cfg).items() if k not in CADENCE}
    vocab_json = json.dumps([vocab.wordpiece_size, vocab.tokens, vocab.out_ids])
    return {"model": model_cfg.to_dict(), "train": keep, "seed": seed,
            "vocab": hashlib.sha256(vocab_json.encode()).hexdigest()}


def save_state(path, state: dict) -> None:
    """Write a training state dict atomically (a kill mid-write leaves the previous state)."""
    with atomic_path(path, ".pt") as tmp, open(tmp, "wb") as f:
        torch.save(state, f)  # a file object: the archive's inner folder is not named after the temp file


def load_state(path: Path, fingerprint: dict) -> dict | None:
    """The saved training state at `path`, or None when there is none or it belongs to other settings."""
    if not path.exists():
        return None
    state = torch.load(path, map_location="cpu", weights_only=False)
    if state.get("fingerprint") != fingerprint:
        log(f"[train] {path} was written with other settings or data: starting from step 0")
        return None
    return state


def save_model(out_dir, weights: dict[str, torch.Tensor], cfg: ModelConfig, vocab: Vocab) -> None:
    """Write out_dir/{config.json, vocab.json, model.pt} (model.pt: the state dict `weights`, e.g. the EMA's)."""
    out_dir = Path(out_dir)
    write_json(out_dir / "config.json", cfg.to_dict())
    vocab.save(out_dir / "vocab.json")
    with atomic_path(out_dir / "model.pt", ".pt") as tmp, open(tmp, "wb") as f:
        torch.save(weights, f)  # a file object: the same weights give the same bytes


def load_model(model_dir, device: str | torch.device = "cpu") -> tuple[nn.Module, Vocab]:
    """The trained model (EMA weights, eval mode) and its vocab from a save_model folder."""
    model_dir = Path(model_dir)
    cfg = ModelConfig.from_dict(read_json(model_dir / "config.json", stage="train_diffusion"))
    vocab = Vocab.load(model_dir / "vocab.json")
    if not (model_dir / "model.pt").exists():
        raise PipelineError(f"{model_dir / 'model.pt'} not found: build it with `dvc repro train_diffusion`")
    model = build_model(cfg, vocab, pretrained=False)  # the saved weights replace any initialisation
    model.load_state_dict(torch.load(model_dir / "model.pt", map_location="cpu", weights_only=True))
    return model.to(device).eval(), vocab
