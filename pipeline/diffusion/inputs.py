"""Model inputs: one example as a token sequence with per-position role / sentence / word ids, and batches of them.

Sequence layout (paper section 3.2, w = w^u + w^c + w^y), for signals = (cm, it, sf):

    context WordPieces | SEP | CM CM CM | IT per sentence | SF per word | SEP | response WordPieces | END | pad...

- context: the utterances' WordPieces joined by WordPiece [SEP], cut to the newest cfg.max_context tokens and to what
  the rest leaves of cfg.max_len (the oldest tokens go first).
- CM: 3 slots in labels.MECHANISMS order (er, ip, ex), each the mechanism's token or the null token.
- IT: one token per response sentence; SF: one token per response word. An ablated signal (not in cfg.signals) has no
  tokens at all, so it has no rows or columns in the attention mask either.
- response: the WordPieces of the words plus END; these positions are the only ones the diffusion noises. The word and
  sentence structure (which subword belongs to which word and sentence) comes from the control source: the gold
  response in training, the retrieved candidate at inference, so a generated response has the candidate's number of
  subwords (the END token may come earlier; decoding stops there).
- A response too long for max_len loses whole words from its end (with their SF tokens, and IT tokens of sentences
  left without words).
- Given levels (`free_levels`): a row may give only some of the model's levels (training's condition dropout, a user's
  hand-set control). A level that is not given has no tokens, and the structure it carried is freed with it: without
  IT no position belongs to a sentence (sent -1), without SF no response position belongs to a word (word -1). The
  response keeps its number of positions (its length comes from the control source).

Per position: `sent` is the response sentence an IT token / SF token / response subword belongs to, `word` the word an
SF token / response subword belongs to; -1 elsewhere (END included). control_range_mask reads only role, sent, word.
"""
from bisect import bisect_left
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, fields
from enum import IntEnum

import torch

from pipeline import labels
from pipeline.diffusion.config import ModelConfig
from pipeline.diffusion.vocab import PAD_ID, Vocab
from pipeline.errors import PipelineError
from pipeline.models import wordpiece_tokenizer
from pipeline.progress import progress


class Role(IntEnum):
    CONTEXT = 0
    SEP = 1
    CM = 2
    IT = 3
    SF = 4
    RESPONSE = 5  # response subwords and END: the noised positions
    PAD = 6


SIGNAL_ROLE = {"cm": Role.CM, "it": Role.IT, "sf": Role.SF}  # the role of each control level's tokens


@dataclass
class Example:
    """One encoded sequence; all lists have the same length L.

    ids: model ids (Vocab); at response positions the gold ids in training, PAD_ID placeholders at inference.
    role: Role per position. sent / word: response sentence / word index, -1 where none.
    target: index into vocab.out_ids of the gold token at response positions, -1 elsewhere (and at inference, and for
    a gold token outside the output vocabulary).
    """

    ids: list[int]
    role: list[int]
    sent: list[int]
    word: list[int]
    target: list[int]

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Batch:
    """Examples padded to a common length L (the longest in the batch). All tensors [B, L], int64."""

    ids: torch.Tensor
    role: torch.Tensor
    sent: torch.Tensor
    word: torch.Tensor
    target: torch.Tensor

    @property
    def is_response(self) -> torch.Tensor:  # [B, L] bool: the positions diffusion noises and generates
        return self.role == Role.RESPONSE

    @property
    def is_pad(self) -> torch.Tensor:  # [B, L] bool
        return self.role == Role.PAD

    def to(self, device) -> "Batch":
        return Batch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    def __len__(self) -> int:
        return self.ids.shape[0]


def context_ids(context: Sequence[str]) -> list[int]:
    """WordPieces of the utterances, oldest first, joined by WordPiece [SEP] (no [CLS], no trailing [SEP])."""
    tok, context = wordpiece_tokenizer(), list(context)  # a Parquet list column arrives as a numpy array
    out: list[int] = []
    for i, utt in enumerate(tok(context, add_special_tokens=False)["input_ids"] if context else []):
        out += ([tok.sep_token_id] if i else []) + utt
    return out


def encode_example(context: Sequence[str], controls: Mapping, vocab: Vocab, cfg: ModelConfig,
                   response_ids: Sequence[int] | None = None, given: Collection[str] | None = None) -> Example:
    """Encode one example (layout in the module docstring).

    context: the utterances before the response, oldest first.
    controls: a mapping with the pipeline.schemas.CONTROL_FIELDS keys (a controls.parquet row in training, a
      candidates.parquet row at inference); word_sent, sf, intents, cm_*, subword_word are read.
    response_ids: the gold response's WordPiece ids (training: controls["subword_ids"] of the same row), aligned to
      controls["subword_word"]; None at inference, where the response positions are placeholders.
    given: the levels the row gives (None = all of cfg.signals); the others are freed (`free_levels`).
    """
    word_sent = [int(s) for s in controls["word_sent"]]
    subword_word = [int(w) for w in controls["subword_word"]]
    sf, intents = list(controls["sf"]), list(controls["intents"])
    _check_structure(word_sent, subword_word, sf, intents, response_ids)

    # Keep the longest word prefix whose controls + response fit in max_len (context takes what is left); the
    # tokens of a level the row does not give take no room.
    use = set(cfg.signals) if given is None else set(cfg.signals) & set(given)
    n_words = len(word_sent)
    while True:
        n_sub = bisect_left(subword_word, n_words)  # subwords of the kept words (subword_word is non-decreasing)
        n_sent = len(intents) if n_words == len(word_sent) else (word_sent[n_words - 1] + 1 if n_words else 0)
        part = 2 + 3 * ("cm" in use) + n_sent * ("it" in use) + n_words * ("sf" in use) + n_sub + 1
        if part <= cfg.max_len or n_words == 0:
            break
        n_words -= 1
    if part > cfg.max_len:
        raise PipelineError(f"max_len={cfg.max_len} cannot hold even an empty response's controls: raise it")
    ctx = context_ids(context)
    ctx = ctx[len(ctx) - min(len(ctx), cfg.max_context, cfg.max_len - part):]

    ids, role, sent, word = list(ctx), [Role.CONTEXT] * len(ctx), [-1] * len(ctx), [-1] * len(ctx)

    def put(i: int, r: Role, s: int = -1, w: int = -1) -> None:
        ids.append(i)
        role.append(r)
        sent.append(s)
        word.append(w)

    put(vocab.sep, Role.SEP)
    if "cm" in use:
        for i in vocab.cm_ids({m: bool(controls[f"cm_{m}"]) for m in labels.MECHANISMS}):
            put(i, Role.CM)
    if "it" in use:
        for s in range(n_sent):
            put(vocab.intent_id(intents[s]), Role.IT, s)
    if "sf" in use:
        for w in range(n_words):
            put(vocab.sf_id(sf[w]), Role.SF, word_sent[w], w)
    put(vocab.sep, Role.SEP)
    start = len(ids)
    for k in range(n_sub):
        w = subword_word[k]
        put(PAD_ID if response_ids is None else int(response_ids[k]), Role.RESPONSE, word_sent[w], w)
    put(PAD_ID if response_ids is None else vocab.end, Role.RESPONSE)

    target = [-1] * len(ids)
    if response_ids is not None:
        target[start:] = vocab.out_index[ids[start:]].tolist()
    example = Example(ids, [int(r) for r in role], sent, word, target)
    return example if given is None else free_levels(example, set(cfg.signals) - set(given))


def free_levels(example: Example, free: Collection[str]) -> Example:
    """The example without the control tokens of the levels in `free` (a subset of SIGNALS) and without the structure
    they carried: with "it" free no position belongs to a sentence, with "sf" free no response position to a word.
    The response positions (their count, ids and targets) are unchanged."""
    drop = {SIGNAL_ROLE[level] for level in free}
    keep = [i for i, r in enumerate(example.role) if r not in drop]
    role = [example.role[i] for i in keep]
    sent = [-1 if "it" in free else example.sent[i] for i in keep]
    word = [-1 if "sf" in free and r == Role.RESPONSE else example.word[i] for i, r in zip(keep, role)]
    return Example([example.ids[i] for i in keep], role, sent, word, [example.target[i] for i in keep])


def encode_rows(rows: Sequence[Mapping], vocab: Vocab, cfg: ModelConfig, gold: bool = True) -> list[Example]:
    """Encode controls-like rows (mappings with `context` and the CONTROL_FIELDS keys) as model inputs.

    gold: the row's own response (`subword_ids`) fills the response positions (training, held-out figures); otherwise
    they are placeholders to generate (sampling from a control source). A row's optional `given` key lists the levels
    it gives (absent: all of the model's; encode_example).
    """
    return [encode_example(r["context"], r, vocab, cfg, r["subword_ids"] if gold else None, r.get("given"))
            for r in progress(rows, desc="encode", every_s=30.0)]


def _check_structure(word_sent, subword_word, sf, intents, response_ids) -> None:
    """The control source must describe one consistent segmentation; say which field is off if not."""
    n_words = len(word_sent)
    problem = None
    if len(sf) != n_words:
        problem = f"{len(sf)} SF tokens for {n_words} words"
    elif any(not 0 <= s < len(intents) for s in word_sent) or word_sent != sorted(word_sent):
        problem = f"word_sent {word_sent} does not index {len(intents)} sentences in order"
    elif subword_word != sorted(subword_word) or set(subword_word) != set(range(n_words)):
        problem = f"subword_word {subword_word} does not cover words 0..{n_words - 1} in order"
    elif response_ids is not None and len(response_ids) != len(subword_word):
        problem = f"{len(response_ids)} response ids for {len(subword_word)} subwords"
    if problem:
        raise PipelineError(f"inconsistent control row: {problem}: rebuild data/signals/controls.parquet")


def collate(examples: Sequence[Example]) -> Batch:
    """Pad examples to the longest one: ids PAD_ID, role PAD, sent/word/target -1. -> Batch of [B, L] tensors."""
    B, L = len(examples), max(len(e) for e in examples)
    out = {"ids": torch.full((B, L), PAD_ID), "role": torch.full((B, L), int(Role.PAD)),
           **{k: torch.full((B, L), -1) for k in ("sent", "word", "target")}}
    for b, ex in enumerate(examples):
        for k, t in out.items():
            t[b, :len(ex)] = torch.tensor(getattr(ex, k))
    return Batch(**out)


def stack(first: Batch, second: Batch) -> Batch:
    """Two batches as one, the rows of `first` then those of `second`, padded to the longer L as `collate` pads."""
    L = max(first.ids.shape[1], second.ids.shape[1])
    fill = {"ids": PAD_ID, "role": int(Role.PAD), "sent": -1, "word": -1, "target": -1}

    def pad(t: torch.Tensor, value: int) -> torch.Tensor:
        return torch.nn.functional.pad(t, (0, L - t.shape[1]), value=value)

    return Batch(**{k: torch.cat([pad(getattr(first, k), v), pad(getattr(second, k), v)]) for k, v in fill.items()})
