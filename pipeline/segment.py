"""The one word and sentence segmentation of responses that every consumer shares (taggers, frames, the model).

Words are spaCy tokens (whitespace dropped); a word's WordPiece subwords all belong to it (`wordpiece_align`).
"""
from collections.abc import Iterable
from dataclasses import dataclass

from pipeline.models import spacy_nlp, wordpiece_tokenizer
from pipeline.progress import progress


@dataclass(frozen=True)
class SegmentParams:
    """params.yaml `segment`: spaCy batch size."""

    batch_size: int


def segment_texts(texts: Iterable[str], batch_size: int = 256, total: int | None = None) -> list[dict]:
    """Analyse each text; return one dict per text with the `pipeline.schemas.SEGMENT_FIELDS` keys.

    An empty (or whitespace-only) text yields empty lists.
    """
    rows = []
    docs = spacy_nlp().pipe((t or "" for t in texts), batch_size=batch_size)
    for doc in progress(docs, total=total, desc="segment"):
        words = [tok for tok in doc if not tok.is_space]
        sents = [s for s in doc.sents if s.text.strip()] if words else []
        rows.append({
            "words": [t.text for t in words],
            "word_starts": [t.idx for t in words],
            "word_ends": [t.idx + len(t.text) for t in words],
            "lemmas": [t.lemma_ for t in words],
            "pos": [t.pos_ for t in words],
            "sent_starts": [s.start_char for s in sents],
            "sent_ends": [s.end_char for s in sents],
        })
    return rows


def word_sentence_index(word_starts: list[int], sent_starts: list[int]) -> list[int]:
    """Sentence index of each word: the last sentence that starts at or before the word."""
    out, s = [], 0
    for start in word_starts:
        while s + 1 < len(sent_starts) and sent_starts[s + 1] <= start:
            s += 1
        out.append(s)
    return out


def wordpiece_align(words: list[str]) -> tuple[list[int], list[int]]:
    """WordPiece ids of `words` (no special tokens) and, for each subword, the index of its word.

    A word that WordPiece drops entirely (e.g. a control character) gets the [UNK] id so every word keeps >= 1 subword.
    """
    if not words:
        return [], []
    tok = wordpiece_tokenizer()
    enc = tok(words, is_split_into_words=True, add_special_tokens=False)
    ids, word_of = list(enc.input_ids), list(enc.word_ids())
    covered = set(word_of)
    if len(covered) < len(words):  # re-insert [UNK] for dropped words, keeping word order
        by_word: dict[int, list[int]] = {}
        for i, w in zip(ids, word_of):
            by_word.setdefault(w, []).append(i)
        ids, word_of = [], []
        for w in range(len(words)):
            pieces = by_word.get(w, [tok.unk_token_id])
            ids += pieces
            word_of += [w] * len(pieces)
    return ids, word_of
