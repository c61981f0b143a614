"""Vocab: the one id space of the model's input and output.

Ids [0, wordpiece_size) are BERT-uncased WordPiece ids, unchanged (context and response tokens). Ids from wordpiece_size
on are our own tokens, one per entry of `tokens`: special tokens, then the control tokens (paper section 3.1: one id per
CM slot value, per intent, per SF token) - not WordPiece pieces of label names.

The output vocabulary (`out_ids`, what the rounding head can emit) is END plus the WordPiece ids seen in training
responses ("reduced": 9,928 of 30,522 ids on the ED train split) or all of WordPiece ("full"): the output projection
is the largest cost of a small model, and ids never seen as targets would only be noise for the argmax.
"""
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from pipeline import labels
from pipeline.diffusion.config import ModelConfig
from pipeline.errors import PipelineError
from pipeline.io import read_json, write_json
from pipeline.models import wordpiece_tokenizer

PAD_ID = 0  # WordPiece [PAD]: padding and the placeholder of not-yet-generated response positions
MASK_ID = 103  # WordPiece [MASK]: the absorbing state of the masked family (never an output id)
SEP, END = "<sep>", "<end>"  # region separator (context | controls | response) and end of response
SPECIALS = (SEP, END)
CM_NULL = f"CM:{labels.CONTROL_NULL}"


def cm_token(mechanism: str) -> str:
    """Own token of a CM slot holding `mechanism` (a key of labels.MECHANISM_NAMES)."""
    return f"CM:{labels.MECHANISM_NAMES[mechanism]}"


def intent_token(intent: str) -> str:
    return f"IT:{intent.upper()}"


def sf_token(sf: str) -> str:
    return f"SF:{sf}"


@dataclass
class Vocab:
    """wordpiece_size: 30,522 for BERT-uncased. tokens: our own tokens (ids wordpiece_size + i). out_ids: sorted model
    ids the rounding head scores (END included)."""

    wordpiece_size: int
    tokens: list[str]
    out_ids: list[int]
    _own: dict[str, int] = field(init=False, repr=False)
    out_index: np.ndarray = field(init=False, repr=False)  # [size] int64: position in out_ids, -1 if not an output

    def __post_init__(self):
        self._own = {tok: self.wordpiece_size + i for i, tok in enumerate(self.tokens)}
        missing = [t for t in (*SPECIALS, CM_NULL) if t not in self._own]
        if missing or self.end not in self.out_ids:
            raise PipelineError(f"vocab lacks special tokens {missing or [END]}: rebuild it with Vocab.build")
        self.out_index = np.full(self.size, -1, dtype=np.int64)
        self.out_index[self.out_ids] = np.arange(len(self.out_ids))

    @classmethod
    def build(cls, controls_rows: Iterable[Mapping], cfg: ModelConfig) -> "Vocab":
        """Vocab from training rows (mappings with the CONTROL_FIELDS keys `sf` and `subword_ids`, e.g.
        `controls_df.to_dict("records")` of the train split): the SF tokens they use and, for cfg.vocab == "reduced",
        the WordPiece ids of their responses."""
        tok = wordpiece_tokenizer()
        if (tok.pad_token_id, tok.mask_token_id) != (PAD_ID, MASK_ID):
            raise PipelineError(f"WordPiece [PAD], [MASK] have ids {tok.pad_token_id}, {tok.mask_token_id}, expected "
                                f"{PAD_ID}, {MASK_ID}: wrong tokenizer")
        wordpiece_size = len(tok)
        frames, response_ids = set(), set()
        for row in controls_rows:
            frames.update(row["sf"])
            response_ids.update(int(i) for i in row["subword_ids"])
        frames -= set(labels.SF_SPECIAL)
        tokens = [*SPECIALS,
                  *(cm_token(m) for m in labels.MECHANISMS), CM_NULL,
                  *(intent_token(i) for i in labels.INTENTS),
                  *(sf_token(s) for s in (*labels.SF_SPECIAL, *sorted(frames)))]
        end_id = wordpiece_size + tokens.index(END)
        words = sorted((response_ids if cfg.vocab == "reduced" else set(range(wordpiece_size))) - {MASK_ID})
        return cls(wordpiece_size, tokens, [*words, end_id])

    def save(self, path) -> None:
        write_json(path, {"wordpiece_size": self.wordpiece_size, "tokens": self.tokens, "out_ids": self.out_ids})

    @classmethod
    def load(cls, path) -> "Vocab":
        d = read_json(path, stage="train_diffusion")
        return cls(d["wordpiece_size"], d["tokens"], d["out_ids"])

    @property
    def size(self) -> int:
        """Rows of the embedding table: every WordPiece id and every own token."""
        return self.wordpiece_size + len(self.tokens)

    @property
    def sep(self) -> int:
        return self._own[SEP]

    @property
    def end(self) -> int:
        return self._own[END]

    @property
    def mask(self) -> int:
        return MASK_ID

    def cm_ids(self, present: Mapping[str, bool]) -> list[int]:
        """The 3 CM slot ids in labels.MECHANISMS order: the mechanism's token if present[m] else the null token."""
        return [self._own[cm_token(m) if present[m] else CM_NULL] for m in labels.MECHANISMS]

    def intent_id(self, intent: str) -> int:
        tok = intent_token(intent)
        if tok not in self._own:
            raise PipelineError(f"unknown intent {intent!r} (one of {list(labels.INTENTS)}): rebuild data/signals")
        return self._own[tok]

    def sf_id(self, sf: str) -> int:
        """Id of an SF token. A frame never seen in the training rows has no learned meaning, so it is read as
        SF_NULL ("no signal") - this only happens for oracle controls of valid/test responses."""
        return self._own.get(sf_token(sf), self._own[sf_token(labels.SF_NULL)])
