"""Semantic frames per word (SF): a FrameNet 1.7 lexicon tagger with a rule layer and MiniLM disambiguation.

The paper tagged responses with open-SESAME, whose weights cannot be had here. This tagger gives every word of a
response (the shared spaCy segmentation, `pipeline.segment`) exactly one SF token, in three steps:

1. Rule layer (the paper's special tokens, `pipeline.labels`): personal pronouns -> PRONOUN; yes-words -> YES;
   negations (no, not, n't, never, ...) -> NO; the seven wh-words -> WHY, WHEN, ...; a question mark -> "?".
2. Lexicon: a content word (NOUN, PROPN, VERB, ADJ, ADV, NUM, or a modal AUX such as could/can/should) looks up its
   lexical unit `lemma.pos` (spaCy lemma + coarse POS mapped to FrameNet POS; a VERB with no verb LU tries the
   adjective; a modal keeps only its modality frames). Multi-word LUs ("give up.v", "a lot.n")
   match first, longest first, on consecutive lemmas; every word of the match takes the frame. Every other word
   (function words, be/have/do as auxiliaries, punctuation, emoji) -> "_".
3. Disambiguation: an LU string listed under several frames (1,987 of them, e.g. sad.a -> Emotion_directed,
   Stimulus_focus) takes the candidate frame whose definition is closest (MiniLM cosine) to the word's sentence.
   The "first candidate" (the frame of the LU with the lowest FrameNet id) is kept beside it to measure what
   disambiguation changes.

The definitions of all 1,221 frames are encoded once (`FrameTagger.build`) and cached under the models folder.
"""
import re
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.embeddings import encode_texts, sentence_texts
from pipeline.errors import PipelineError
from pipeline.io import load_npy, read_json, save_npy, write_json
from pipeline.labels import SF_NO, SF_NULL, SF_PRONOUN, SF_QUESTION, SF_SPECIAL, SF_WH, SF_YES
from pipeline.models import ENCODER_NAME
from pipeline.segment import word_sentence_index

LU_FILE = "FN17_enlu_id.json"  # 13,572 LUs: {lu_id, frame, lu: "lemma.pos", ...}
DEFINITIONS_FILE = "fn1.7_frame_definitions.json"  # 1,221 frames: name -> definition text

# spaCy coarse POS -> FrameNet LU POS.
FN_POS = {"NOUN": "n", "PROPN": "n", "VERB": "v", "AUX": "v", "ADJ": "a", "ADV": "adv", "NUM": "num",
          "ADP": "prep", "SCONJ": "scon", "CCONJ": "c", "DET": "art", "INTJ": "intj", "PRON": "pron"}
# Open-class words: the ones a frame is expected for (the denominator of the coverage metric).
CONTENT_POS = frozenset({"NOUN", "PROPN", "VERB", "ADJ", "ADV"})
# Modals carry meaning (FrameNet lists could.v under Possibility, can.v under Capability); be/have/do as auxiliaries don't.
# A modal (spaCy AUX) keeps only its modality frames: "can" as an auxiliary is never Firing or Preserving (to can).
MODALS = frozenset({"can", "could", "may", "might", "must", "shall", "should", "will", "would"})
MODAL_FRAMES = frozenset({"Capability", "Possibility", "Likelihood", "Required_event", "Desirable_event"})

PERSONAL_PRONOUNS = frozenset(
    "i me my mine myself you your yours yourself yourselves he him his himself she her hers herself "
    "it its itself we us our ours ourselves they them their theirs themselves".split())
YES_WORDS = frozenset({"yes", "yeah", "yep", "yup", "yea"})
NO_WORDS = frozenset({"no", "nope", "nah", "not", "never"})  # plus every word whose lemma is "not" (n't, nt)


def special_token(word: str, lemma: str, pos: str) -> str | None:
    """The rule layer: the special SF token of a word with a dialogue function, or None."""
    w = word.lower()
    if pos == "PRON" and w in PERSONAL_PRONOUNS:
        return SF_PRONOUN
    if w in YES_WORDS:
        return SF_YES
    if w in NO_WORDS or lemma.lower() == "not":
        return SF_NO
    if w in SF_WH:
        return SF_WH[w]
    if "?" in w and set(w) <= set("?!."):  # "?", "??", "?!"
        return SF_QUESTION
    return None


def lu_parts(lu: str) -> tuple[tuple[str, ...], str]:
    """'give up.v' -> (('give', 'up'), 'v'). Sense notes '[...]' and optional complements '(to)' are dropped."""
    name, pos = lu.rsplit(".", 1)
    name = re.sub(r"\[[^\]]*\]|\([^)]*\)", " ", name)
    return tuple(name.lower().split()), pos


class Inventory(NamedTuple):
    """FrameNet 1.7 as the tagger needs it.

    frames: the 1,221 frame names, sorted; definitions: their definition texts (same order).
    single: (lemma, fn_pos) -> candidate frames, lowest LU id first.
    multi: lemma tuple (2+ words) -> [(fn_pos, frame)], lowest LU id first; max_multi: its longest key.
    """
    frames: tuple[str, ...]
    definitions: tuple[str, ...]
    single: dict[tuple[str, str], tuple[str, ...]]
    multi: dict[tuple[str, ...], list[tuple[str, str]]]
    max_multi: int


def load_inventory(framenet_dir) -> Inventory:
    """Read the LU index and frame definitions from `framenet_dir` (the FrameNet JSON of stage `download`)."""
    framenet_dir = Path(framenet_dir)
    lus, definitions = read_json(framenet_dir / LU_FILE, "download"), read_json(framenet_dir / DEFINITIONS_FILE, "download")
    unknown = sorted({lu["frame"] for lu in lus} - set(definitions))
    if unknown:
        raise PipelineError(f"{framenet_dir}: LUs of frames without a definition ({unknown[:3]}): re-download FrameNet")
    single, multi = {}, {}
    for lu in sorted(lus, key=lambda lu: lu["lu_id"]):
        parts, pos = lu_parts(lu["lu"])
        if len(parts) == 1:
            frames = single.setdefault((parts[0], pos), [])
            if lu["frame"] not in frames:
                frames.append(lu["frame"])
        elif parts and (pos, lu["frame"]) not in multi.setdefault(parts, []):
            multi[parts].append((pos, lu["frame"]))
    frames = tuple(sorted(definitions))
    return Inventory(frames, tuple(definitions[f] for f in frames), {k: tuple(v) for k, v in single.items()}, multi,
                     max((len(k) for k in multi), default=0))


def word_frames(inventory: Inventory, lemma: str, pos: str) -> tuple[str, ...]:
    """Candidate frames of a single word (lower-case lemma, spaCy POS); () for a function word or a word with no LU."""
    if pos in CONTENT_POS or pos == "NUM":
        frames = inventory.single.get((lemma, FN_POS[pos]), ())
        if not frames and pos == "VERB":  # spaCy tags participial adjectives VERB: "I am heartbroken" -> heartbroken.a
            frames = inventory.single.get((lemma, "a"), ())
        return frames
    if pos == "AUX" and lemma in MODALS:
        return tuple(f for f in inventory.single.get((lemma, "v"), ()) if f in MODAL_FRAMES)
    return ()


def candidates(inventory: Inventory, words: Sequence[str], lemmas: Sequence[str], pos: Sequence[str]) -> list:
    """Per word: its special token or "_" (a str), or its candidate frames (a non-empty tuple, first candidate first)."""
    out: list = [special_token(w, l, p) for w, l, p in zip(words, lemmas, pos)]
    lower = [l.lower() for l in lemmas]
    i = 0
    while i < len(words):  # multi-word LUs, longest match first, over words the rule layer left free
        for n in range(min(inventory.max_multi, len(words) - i), 1, -1):
            span = range(i, i + n)
            span_pos = {FN_POS.get(pos[j]) for j in span}
            frames = tuple(dict.fromkeys(f for p, f in inventory.multi.get(tuple(lower[i:i + n]), ())
                                         if p in span_pos or p == "idio"))
            if frames and all(out[j] is None for j in span):
                out[i:i + n] = [frames] * n
                i += n
                break
        else:
            i += 1
    for j, (lemma, p) in enumerate(zip(lower, pos)):
        if out[j] is None:
            out[j] = word_frames(inventory, lemma, p) or SF_NULL
    return out


def segment_sentences(segment: dict, response: str | None) -> list[str]:
    """Each sentence's text: cut from `response` if given, else rebuilt from the words (a space wherever the
    original had whitespace; MiniLM's tokenizer sees the same WordPieces either way)."""
    if response is not None:
        return sentence_texts(response, segment["sent_starts"], segment["sent_ends"])
    sents = word_sentence_index(segment["word_starts"], segment["sent_starts"])
    texts = [""] * len(segment["sent_starts"])
    prev_end = None
    for word, start, end, s in zip(segment["words"], segment["word_starts"], segment["word_ends"], sents):
        gap = " " if texts[s] and start > prev_end else ""
        texts[s] += gap + word
        prev_end = end
    return texts


class WordFrames(NamedTuple):
    """The SF analysis of one response, one entry per word."""
    sf: list[str]  # chosen SF token
    sf_first: list[str]  # SF token with the first candidate frame (differs from sf only where disambiguation chose)
    n_candidates: list[int]  # candidate frames of the word (0 for special tokens and "_")


class FrameTagger:
    """SF tokens for segmented responses.

    inventory: `load_inventory(...)`; frame_vectors: float32 [len(inventory.frames), 384], L2-normalised embeddings of
    the frame definitions; embed: texts -> float32 [n, 384] L2-normalised (MiniLM, or the stage `encode` store).
    """
    VECTORS, META = "definitions.npy", "definitions.json"

    def __init__(self, inventory: Inventory, frame_vectors: np.ndarray, embed: Callable[[list[str]], np.ndarray]):
        self.inventory, self.frame_vectors, self.embed = inventory, frame_vectors, embed
        self.frame_row = {f: i for i, f in enumerate(inventory.frames)}

    @classmethod
    def build(cls, framenet_dir, models_dir, embed=None, batch_size: int = 64, max_seq_length: int = 128) -> "FrameTagger":
        """Encode every frame's definition ("Frame name: definition", MiniLM) once, save under `models_dir`, return the
        tagger. `embed` (for sentences) defaults to MiniLM as well."""
        inventory = load_inventory(framenet_dir)
        texts = [f"{f.replace('_', ' ')}: {d}" for f, d in zip(inventory.frames, inventory.definitions)]
        vectors = encode_texts(texts, batch_size=batch_size, max_seq_length=max_seq_length)  # [1221, 384]
        save_npy(Path(models_dir) / cls.VECTORS, vectors)
        write_json(Path(models_dir) / cls.META, {"encoder": ENCODER_NAME, "max_seq_length": max_seq_length,
                                                  "frames": list(inventory.frames)})
        return cls(inventory, vectors, embed or encode_texts)

    @classmethod
    def load(cls, framenet_dir, models_dir, embed=None) -> "FrameTagger":
        """The tagger with the cached definition vectors. `embed` defaults to encoding sentences with MiniLM."""
        inventory = load_inventory(framenet_dir)
        meta = read_json(Path(models_dir) / cls.META, "tag_frames")
        vectors = load_npy(Path(models_dir) / cls.VECTORS, "tag_frames")
        if meta["frames"] != list(inventory.frames) or meta["encoder"] != ENCODER_NAME or len(vectors) != len(meta["frames"]):
            raise PipelineError(f"{models_dir} was built from other frames or another encoder: `dvc repro tag_frames`")
        return cls(inventory, vectors, embed or encode_texts)

    def tag(self, segments: Sequence[dict], responses: Sequence[str] | None = None) -> list[list[str]]:
        """One SF token per word of each segmented response (dicts with the SEGMENT_FIELDS keys)."""
        return [a.sf for a in self.analyse(segments, responses)]

    def analyse(self, segments: Sequence[dict], responses: Sequence[str] | None = None) -> list[WordFrames]:
        """Candidates for every word, then one batched embedding of the sentences that hold an ambiguous word.

        responses: the texts that were segmented; needed only where `embed` must see the exact sentence strings.
        """
        cands = [candidates(self.inventory, s["words"], s["lemmas"], s["pos"]) for s in segments]
        sents = [word_sentence_index(s["word_starts"], s["sent_starts"]) for s in segments]
        # (doc, sentence) of every word with several candidates: embed those sentences, each distinct text once.
        need = sorted({(d, s) for d in range(len(segments)) for c, s in zip(cands[d], sents[d])
                       if isinstance(c, tuple) and len(c) > 1})
        doc_texts = {d: segment_sentences(segments[d], None if responses is None else responses[d]) for d, _ in need}
        text = {(d, s): doc_texts[d][s] for d, s in need}
        distinct = list(dict.fromkeys(text.values()))
        vectors = self.embed(distinct) if distinct else np.empty((0, self.frame_vectors.shape[1]), np.float32)
        vector = dict(zip(distinct, vectors))  # sentence text -> [384]
        out = []
        for d in range(len(segments)):
            words = [self.choose(c, vector.get(text.get((d, s)))) for c, s in zip(cands[d], sents[d])]
            out.append(WordFrames(*(list(col) for col in zip(*words))) if words else WordFrames([], [], []))
        return out

    def choose(self, cand, sentence_vector: np.ndarray | None) -> tuple[str, str, int]:
        """(chosen token, first-candidate token, number of candidates) of one word.

        cand: a token (str) or candidate frames (tuple); sentence_vector [384] is needed only for several candidates.
        The chosen frame maximises cos(sentence, definition); a tie goes to the earlier candidate.
        """
        if isinstance(cand, str):
            return cand, cand, 0
        if len(cand) == 1:
            return cand[0], cand[0], 1
        scores = self.frame_vectors[[self.frame_row[f] for f in cand]] @ sentence_vector  # [len(cand)]
        return cand[int(np.argmax(scores))], cand[0], len(cand)


def share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def frame_metrics(segments: Sequence[dict], analyses: Sequence[WordFrames], top: int = 30) -> dict:
    """Coverage and disambiguation figures of a tagged corpus (metrics/frames.json).

    content words: open-class POS (CONTENT_POS) that the rule layer did not turn into a special token.
    """
    specials = set(SF_SPECIAL) - {SF_NULL}
    n_words = n_content = n_content_framed = n_nonnull = n_ambiguous = n_changed = 0
    counts = Counter()
    for seg, a in zip(segments, analyses):
        for p, sf, first, n in zip(seg["pos"], a.sf, a.sf_first, a.n_candidates):
            n_words += 1
            n_nonnull += sf != SF_NULL
            if p in CONTENT_POS and sf not in specials:
                n_content += 1
                n_content_framed += n > 0
            n_ambiguous += n > 1
            n_changed += sf != first
            if n > 0:
                counts[sf] += 1
    return {
        "docs": len(analyses),
        "words": n_words,
        "content_words": n_content,
        "content_words_with_frame": share(n_content_framed, n_content),
        "words_with_nonnull_sf": share(n_nonnull, n_words),
        "distinct_frames": len(counts),
        "ambiguous_words": n_ambiguous,
        "disambiguation_changed_first_candidate": share(n_changed, n_ambiguous),
        f"top_{top}_frames": dict(counts.most_common(top)),
    }
