"""TransferTransfo on SmolLM2-135M: the pretrained causal LM fine-tuned on (prompt, response) with the loss on the
response only.

A pair is the prompt's ids (pipeline.baselines.prompts: the controls line, if any, whole; the dialogue cut to its
newest `max_prompt` tokens) followed by the response's first `max_response` tokens and SmolLM2's end token. The LM
head (a 576 x 49,152 matmul, the largest of the model) runs only on the positions that predict a response token.
"""
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from pipeline.baselines.prompts import controls_text, dialogue_text
from pipeline.errors import PipelineError
from pipeline.baselines.store import atomic_dir
from pipeline.io import write_json

Pair = tuple[list[int], list[int]]  # (prompt ids, response ids ending with the end token)


@dataclass(frozen=True)
class LMParams:
    """params.yaml `baselines.lm`: the token budgets of a pair (training and decoding)."""

    max_prompt: int
    max_response: int


def encode_pair(tokenizer, context: Sequence[str], response: str | None, controls: Mapping | None,
                cfg: LMParams) -> Pair:
    """-> (prompt ids, response ids + [eos]); response None (inference) -> (prompt ids, [])."""
    head = tokenizer(f"{controls_text(controls)}\n", add_special_tokens=False).input_ids if controls else []
    dialogue = tokenizer(dialogue_text(context), add_special_tokens=False).input_ids[-cfg.max_prompt:]
    if response is None:
        return head + dialogue, []
    reply = tokenizer(f" {response.strip()}", add_special_tokens=False).input_ids[:cfg.max_response]
    return head + dialogue, reply + [tokenizer.eos_token_id]


def response_loss(model, pairs: Sequence[Pair], pad_id: int) -> torch.Tensor:
    """Mean cross-entropy of the response tokens of `pairs` given their prompts (right-padded batch [B, T])."""
    ids = [p + r for p, r in pairs]
    width = max(map(len, ids))
    input_ids = torch.tensor([x + [pad_id] * (width - len(x)) for x in ids])  # [B, T]
    attention = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in ids])
    rows = torch.tensor([b for b, (p, r) in enumerate(pairs) for _ in r])  # [R]: one per response token
    cols = torch.tensor([len(p) - 1 + j for p, r in pairs for j in range(len(r))])  # the position predicting it
    targets = torch.tensor([t for _, r in pairs for t in r])
    hidden = model.model(input_ids=input_ids, attention_mask=attention).last_hidden_state  # [B, T, 576]
    logits = model.lm_head(hidden[rows, cols])  # [R, V]
    return F.cross_entropy(logits.float(), targets)


def save_lm(out_dir, model, tokenizer, cfg: LMParams, controls: bool) -> None:
    """out_dir: the fine-tuned model (transformers' save_pretrained, float32), its tokenizer and baseline.json (cfg,
    whether prompts carry controls), written into a temp folder renamed into place. No timings: the same training
    gives the same folder."""
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        write_json(tmp / "baseline.json", {"kind": "causal_lm", "params": asdict(cfg), "controls": controls})


def load_lm(model_dir):
    """-> (model in eval mode, tokenizer, LMParams, controls: bool) of a `save_lm` folder."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    meta_path = Path(model_dir) / "baseline.json"
    if not meta_path.exists():
        raise PipelineError(f"{model_dir} is not a trained causal-LM baseline: run `make baselines`")
    meta = json.loads(meta_path.read_text())
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    return model, AutoTokenizer.from_pretrained(model_dir), LMParams(**meta["params"]), meta["controls"]


def pair_lengths(pairs: Sequence[Pair]) -> np.ndarray:
    return np.array([len(p) + len(r) for p, r in pairs])
