"""Answer new dialogue contexts with several controlled responses (paper section 5.4 and appendix C).

For one context: embed it (MiniLM) and tag its emotion distribution, retrieve the k best training candidates (Eq. 8),
take each candidate's control signals, optionally override them by hand (CM, intents, SF frames: `Overrides`, which
frees the levels finer than a hand-set one), or answer from hand-set levels alone without a candidate, and generate one
response per control row with the diffusion model, or one for the whole context, kept among the draws of all its
candidates (the decoding of stage `sample`: pipeline.decoder.Decoder). Everything is loaded once (`Responder.load`)
and reused per context.

Input text: one dialogue per line, its turns (oldest first) separated by TURN_DELIMITER (`read_contexts`).
"""
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
import pandas as pd

from pipeline.controls import control_sequence
from pipeline.decoder import Decoder, SteeredSample
from pipeline.diffusion.config import Rerank, SampleConfig
from pipeline.diffusion.inputs import context_ids
from pipeline.embeddings import context_text, encode_texts
from pipeline.errors import PipelineError
from pipeline.labels import CONTROL_NULL, INTENTS, MECHANISM_NAMES, MECHANISMS, SF_NULL, SF_SPECIAL, SIGNALS
from pipeline.judges import load_judges
from pipeline.metrics.control import CM_COLUMNS
from pipeline.models import wordpiece_tokenizer
from pipeline.progress import log
from pipeline.retrieval import Index, search
from pipeline.schemas import CONTROL_NAMES
from pipeline.taggers import Tagger
from pipeline.tagging import load_tagger

TURN_DELIMITER = "||"


def parse_dialogue(line: str) -> list[str]:
    """'turn 1 || turn 2' -> ['turn 1', 'turn 2'] (blank turns dropped). An empty dialogue is an input error."""
    turns = [t.strip() for t in line.split(TURN_DELIMITER) if t.strip()]
    if not turns:
        raise PipelineError(f"empty context {line!r}: give at least one non-empty turn (turns separated by "
                            f"{TURN_DELIMITER!r})")
    return turns


def read_dialogues(lines: Iterable[str]) -> list[list[str]]:
    """One dialogue per non-blank line."""
    dialogues = [parse_dialogue(line) for line in lines if line.strip()]
    if not dialogues:
        raise PipelineError("no context given: pass it as an argument, with --file PATH, or on stdin (one per line)")
    return dialogues


def line_numbers(numbers: list[int], shown: int = 10) -> str:
    """[2, 4] -> "lines 2, 4": the first `shown` numbers, then how many in all."""
    more = f", ... ({len(numbers)} lines)" if len(numbers) > shown else ""
    return f"line{'s' if len(numbers) > 1 else ''} {', '.join(map(str, numbers[:shown]))}{more}"


def decode_lines(raw: Iterable[bytes]) -> list[str]:
    """Raw input lines -> text. Never fails: invalid UTF-8 becomes U+FFFD and NUL bytes are dropped, each with one
    `notice:` line on stderr naming the lines (1-based) it touched. Long lines are kept: retrieval and the model
    truncate them (with their own notice)."""
    lines, invalid, nul = [], [], []
    for number, line in enumerate(raw, 1):
        if b"\0" in line:
            nul.append(number)
            line = line.replace(b"\0", b"")
        try:
            lines.append(line.decode("utf-8"))
        except UnicodeDecodeError:
            invalid.append(number)
            lines.append(line.decode("utf-8", errors="replace"))
    if invalid:
        log(f"notice: invalid UTF-8 on {line_numbers(invalid)}, replaced by U+FFFD")
    if nul:
        log(f"notice: NUL bytes on {line_numbers(nul)}, removed")
    return lines


def read_contexts(context: str | None, file: str | None, stdin: BinaryIO) -> list[list[str]]:
    """The dialogues to answer: `context` (one dialogue), else one per non-blank line of the text file `file`, else of
    `stdin` (also for file "-"); lines are read as bytes and decoded by `decode_lines`. Raises PipelineError when no
    dialogue is left, a line has no turn, or the file cannot be read."""
    if context is not None and file is not None:
        raise PipelineError("give the context either as an argument or with --file, not both")
    if context is not None:  # argv's undecodable bytes arrive as lone surrogates: make them invalid UTF-8 again
        raw = [context.encode("utf-8", errors="surrogatepass")]
    elif file is None or file == "-":
        raw = stdin.read().split(b"\n")
    else:
        try:
            raw = Path(file).read_bytes().split(b"\n")
        except OSError as err:
            raise PipelineError(f"cannot read {file} ({err.strerror}): give a text file with one dialogue per line") \
                from None
    return read_dialogues(decode_lines(raw))


def unknown_label(kind: str, value: str, valid: Sequence[str]) -> PipelineError:
    close = get_close_matches(value, valid, n=3)
    hint = f" (did you mean {', '.join(close)}?)" if close else ""
    shown = ", ".join(valid) if len(valid) <= 40 else ", ".join(valid[:40]) + f", ... ({len(valid)} in all)"
    return PipelineError(f"unknown {kind} {value!r}{hint}; valid: {shown}")


# --cm accepts a mechanism's code or name, case-insensitive; "none" asks for no mechanism at all.
CM_CHOICES = {**{m: m for m in MECHANISMS}, **{name.lower(): m for m, name in MECHANISM_NAMES.items()}}


@dataclass
class Overrides:
    """Hand-set control levels (None = not set) and what they mean (docs/respond.md, "Steering by hand").

    A level the user sets replaces the candidate's at that level and frees every finer level the user did not set
    (the candidate's intents and frames were derived from a response with another CM); coarser levels the user did
    not set stay the candidate's. keep_skeleton: nothing is freed (the candidate's sentence and word skeleton stays,
    intents mapped onto its sentences: the behaviour before condition dropout).

    cm: the present mechanisms (the others absent). intents: one per sentence of the response; on a kept skeleton
    sentence i gets intents[i] and the last one repeats. frames: one SF token per word of a new one-sentence response
    skeleton with one WordPiece per word.
    """

    cm: frozenset[str] | None = None
    intents: tuple[str, ...] | None = None
    frames: tuple[str, ...] | None = None
    keep_skeleton: bool = False

    @classmethod
    def parse(cls, cm: Sequence[str] = (), intent: str | None = None, frames: str | None = None,
              known_frames: Sequence[str] = (), keep_skeleton: bool = False) -> "Overrides":
        """Validate the CLI values: --cm (repeatable or comma-separated), --intent and --frames (comma-separated)."""
        out_cm = None
        if cm:
            names = [v.strip().lower() for value in cm for v in value.split(",") if v.strip()]
            bad = [n for n in names if n not in CM_CHOICES and n != CONTROL_NULL.lower()]
            if bad:
                raise unknown_label("communication mechanism", bad[0], [*CM_CHOICES, CONTROL_NULL.lower()])
            out_cm = frozenset(CM_CHOICES[n] for n in names if n in CM_CHOICES)
        out_intents = None
        if intent is not None:
            out_intents = tuple(v.strip().lower() for v in intent.split(",") if v.strip())
            bad = [i for i in out_intents if i not in INTENTS]
            if bad or not out_intents:
                raise unknown_label("intent", bad[0] if bad else intent, INTENTS)
        out_frames = None
        if frames is not None:
            out_frames = tuple(v.strip() for v in frames.split(",") if v.strip())
            valid = [*SF_SPECIAL, *sorted(set(known_frames) - set(SF_SPECIAL))]
            bad = [f for f in out_frames if f not in valid]
            if bad or not out_frames:
                raise unknown_label("SF token (a FrameNet frame seen in training, or a special token)",
                                    bad[0] if bad else frames, valid)
        return cls(out_cm, out_intents, out_frames, keep_skeleton)

    @property
    def levels(self) -> tuple[str, ...]:
        """The levels set by hand, coarse to fine (a subset of SIGNALS)."""
        return tuple(s for s, v in zip(SIGNALS, (self.cm, self.intents, self.frames)) if v is not None)

    def given(self, candidate: bool = True) -> tuple[str, ...]:
        """The levels the model is given: the hand-set ones, and (candidate) the candidate's coarser than the finest
        hand-set level; all of them when nothing is set or the skeleton is kept. Without a candidate only the
        hand-set levels."""
        if not candidate:
            if self.frames is not None and not {"cm", "it"} <= set(self.levels):
                raise PipelineError("frames without a candidate need a CM and an intent too (--cm, --intent): the "
                                    "model reads frames only under both")
            return self.levels
        if self.keep_skeleton or not self.levels:
            return SIGNALS
        finest = max(SIGNALS.index(s) for s in self.levels)
        return tuple(s for i, s in enumerate(SIGNALS) if i <= finest)

    def apply(self, row: Mapping, candidate: bool = True) -> dict:
        """A new control row (CONTROL_FIELDS keys and `given`, the levels the model reads: inputs.encode_example) with
        the overrides applied to `row` (a candidate; without one, candidate False, a pool row that only lends its
        length)."""
        row = {name: list(row[name]) if isinstance(row[name], (list, np.ndarray)) else row[name]
               for name in CONTROL_NAMES}
        if self.frames is not None:  # a new skeleton: one sentence, one word (and one placeholder subword) per frame
            if self.intents is not None and len(self.intents) > 1:
                raise PipelineError("frames build a one-sentence response: give one intent with them")
            n = len(self.frames)
            row.update(words=[""] * n, word_sent=[0] * n, sf=list(self.frames), sent_starts=[0], sent_ends=[0],
                       intents=row["intents"][:1] or ["neutral"],  # an empty candidate response has no intent
                       subword_ids=[0] * n, subword_word=list(range(n)))
        if self.intents is not None and (self.keep_skeleton or self.frames is not None):
            last = len(self.intents) - 1
            row["intents"] = [self.intents[min(i, last)] for i in range(len(row["intents"]))]
        elif self.intents is not None:  # the user's sentences over the candidate's WordPieces (its words are freed)
            n, pieces = len(self.intents), len(row["subword_word"])
            if pieces < n:
                raise PipelineError(f"{n} intents for a response of {pieces} WordPieces: ask for fewer intents (or "
                                    "no retrieval, whose length fits them)")
            row.update(intents=list(self.intents), words=[""] * pieces, sf=[SF_NULL] * pieces,
                       word_sent=[p * n // pieces for p in range(pieces)], subword_word=list(range(pieces)),
                       sent_starts=[0] * n, sent_ends=[0] * n)
        if self.cm is not None:
            row.update({f"cm_{m}": m in self.cm for m in MECHANISMS})
        return {**row, "given": list(self.given(candidate))}


@dataclass(frozen=True)
class Options:
    """What one respond call asks beyond its dialogue, under the names of the API's fields (pipeline/serve.py; the
    flags of `respond` spell them --name). None: the default of params.yaml (`sample`, `retrieve.k`). cm: mechanism
    names or codes; intents / frames: comma-separated (Overrides.parse); init: noise | candidate (edit the
    candidates' own responses at `strength`); samples, rerank, guidance: the decoding's num_samples, rerank,
    guidance; one: a single response kept among the draws of all k candidates; no_retrieval, keep_skeleton: see
    Overrides and Responder.respond."""

    k: int | None = None
    cm: tuple[str, ...] = ()
    intents: str | None = None
    frames: str | None = None
    init: Literal["noise", "candidate"] = "noise"
    strength: float | None = None
    samples: int | None = None
    rerank: Rerank | None = None
    one: bool = False
    guidance: float | None = None
    no_retrieval: bool = False
    keep_skeleton: bool = False

    @property
    def edit(self) -> bool:
        return self.init == "candidate"

    def check(self, spell: Callable[[str], str] = str) -> None:
        """PipelineError for the combinations respond refuses; spell: an option's name as the user wrote it."""
        if self.edit and self.frames is not None:
            raise PipelineError(f"{spell('init')} candidate edits the candidate's own words: it cannot be combined "
                                f"with {spell('frames')}")
        if self.no_retrieval and (self.edit or self.keep_skeleton):
            raise PipelineError(f"{spell('no_retrieval')} has no candidate: it cannot be combined with "
                                f"{spell('init')} candidate or {spell('keep_skeleton')}")

    def decoding(self, sampling: SampleConfig) -> SampleConfig:
        """params.yaml's `sample` (its `edit` settings with init candidate, as stage sample@edit) with the options
        set."""
        sampling = sampling.for_edit() if self.edit else sampling
        changes = {"num_samples": self.samples, "rerank": self.rerank, "edit_strength": self.strength,
                   "guidance": self.guidance}
        return dataclasses.replace(sampling, **{name: v for name, v in changes.items() if v is not None})

    def responses(self, sampling: SampleConfig, retrieve_k: int) -> int:
        """Candidates answered: k, else retrieve.k (with `one`: the candidates stage sample keeps one among)."""
        if self.k is not None:
            return self.k
        return sampling.candidates_of(retrieve_k) if self.one else retrieve_k

    def overrides(self, known_frames: Callable[[], Sequence[str]]) -> Overrides:
        """The hand-set levels; known_frames (called only when frames are given): the SF tokens the model knows."""
        known = known_frames() if self.frames is not None else ()
        return Overrides.parse(list(self.cm), self.intents, self.frames, known, self.keep_skeleton)


def length_donors(pool: pd.DataFrame, overrides: Overrides, k: int) -> list[dict]:
    """Without retrieval, the response length comes from the training responses of the hand-set CM and first intent:
    the k pool rows (schema CONTROLS) nearest the median WordPiece length of those that match (all rows when none
    does), shortest first. They lend only their length and segmentation; every level not set by hand is freed."""
    match = np.ones(len(pool), dtype=bool)
    if overrides.cm is not None:
        for m in MECHANISMS:
            match &= pool[f"cm_{m}"].to_numpy(bool) == (m in overrides.cm)
    if overrides.intents is not None:
        match &= np.array([len(i) > 0 and i[0] == overrides.intents[0] for i in pool["intents"]])
    rows = pool[match] if match.any() else pool
    length = rows["subword_word"].map(len).to_numpy()
    order = np.argsort(np.abs(length - np.median(length)), kind="stable")[:k]
    return rows.iloc[order[np.argsort(length[order], kind="stable")]].to_dict("records")


@dataclass
class Responder:
    """The loaded artifacts: the retrieval index, the emotion tagger (and its encoder setting), the decoder; the seed of
    its draws and whether they start from the candidates' responses (edit) or from noise."""

    index: Index
    emotion: Tagger
    decoder: Decoder
    seed: int
    edit: bool = False

    @classmethod
    def load(cls, index_dir, taggers_dir, model_dir, sampling: SampleConfig, seed: int, edit: bool = False,
             cm_threshold: float = 0.5, steered: SteeredSample = SteeredSample()) -> "Responder":
        """sampling: the decoder's settings (edit: from the candidates' responses at sampling.edit_strength);
        cm_threshold: params.yaml `tag.cm_threshold`, read by rerank rule controls; steered: params.yaml
        `steered_sample`, the settings of the rows a hand-set level frees."""
        judges = load_judges(sampling.rerank, taggers_dir, cm_threshold)
        return cls(Index.load(index_dir), load_tagger(Path(taggers_dir) / "emotion"),
                   Decoder.load(model_dir, sampling, judges, steered=steered), seed, edit)

    def known_frames(self) -> list[str]:
        """SF tokens of the training responses: the ones the model has learned (pipeline.diffusion.vocab)."""
        return sorted({t for sf in self.index.pool["sf"] for t in sf})

    def retrieve(self, context: Sequence[str], k: int, gamma: float) -> list[dict]:
        """The k best pool rows for a new context (Eq. 8), best first: CONTROLS columns plus `rank` and `score`."""
        text = context_text(context)
        limit = self.emotion.encoder["max_seq_length"]
        n = len(wordpiece_tokenizer()(text, add_special_tokens=False, verbose=False)["input_ids"])
        if n > limit - 2:
            log(f"notice: the context has {n} WordPieces; retrieval reads only the first {limit - 2}")
        semantic = encode_texts([text], max_seq_length=limit)  # [1, 384]
        emotion = self.emotion.predict_proba([text])["emotion"]  # [1, 32]
        hits = search(self.index, semantic, emotion, [None], k=k, gamma=gamma)
        rows = self.index.pool.iloc[hits.pool].to_dict("records")
        return [{**row, "rank": int(r), "score": float(s)} for row, r, s in zip(rows, hits.rank, hits.score)]

    def respond(self, context: Sequence[str], k: int, gamma: float, overrides: Overrides,
                one: bool = False, retrieval: bool = True) -> list[dict]:
        """One result per candidate of the k retrieved (one: a single result, the text kept among the draws of all k,
        as stage `sample` keeps one per example): the candidate row, the control row actually used, and the generated
        response. retrieval False: no candidate; the hand-set levels alone steer, over k length donors
        (`length_donors`; their rank is their place, their score None)."""
        if retrieval:
            candidates = self.retrieve(context, k, gamma)
        else:
            candidates = [{**row, "rank": r, "score": None}
                          for r, row in enumerate(length_donors(self.index.pool, overrides, k))]
        controls = [overrides.apply(c, candidate=retrieval) for c in candidates]
        n, limit = len(context_ids(context)), self.decoder.model.cfg.max_context
        if n > limit:
            log(f"notice: the context has {n} WordPieces; the model reads only the newest {limit}")
        rows = [{**row, "context": list(context)} for row in controls]
        kept = self.decoder(rows, self.seed, self.edit, group=len(rows) if one else 1)
        return [{"candidate": candidates[i], "controls": controls[i], "response": text} for i, text in kept]


def show(turns: list[str], results: list[dict]) -> str:
    """A readable block per dialogue: the context, then per candidate its score, response, controls and the output."""
    lines = ["context: " + " || ".join(turns)]
    for res in results:
        cand, ctl = res["candidate"], res["controls"]
        source = (f"score {cand['score']:.3f}  candidate {cand['example_id']}: {cand['response']}"
                  if cand["score"] is not None else f"no retrieval  length of {cand['example_id']}")
        lines += [f"  #{cand['rank'] + 1}  {source}",
                  f"      controls: {control_sequence(ctl, ctl['given']) or '(none)'}  [given: "
                  f"{', '.join(ctl['given']) or 'none'}]",
                  f"      response: {res['response']}"]
    return "\n".join(lines)


def record(turns: list[str], res: dict) -> dict:
    """One JSON line: the context, the candidate (score null without retrieval), the levels given and their controls
    (flat sequence and fields; a freed level null), the generated text."""
    cand, ctl = res["candidate"], res["controls"]
    given = ctl["given"]
    return {"context": turns, "rank": cand["rank"], "score": cand["score"], "candidate_id": cand["example_id"],
            "candidate_response": cand["response"], "given": list(given),
            "control_sequence": control_sequence(ctl, given),
            "cm": {m: bool(ctl[c]) for m, c in zip(MECHANISMS, CM_COLUMNS)} if "cm" in given else None,
            "intents": list(ctl["intents"]) if "it" in given else None,
            "sf": list(ctl["sf"]) if "sf" in given else None, "response": res["response"]}
