"""The control-signal table (data/signals/controls.parquet) and the paper's flat control sequence.

A row holds every control signal of one response, aligned to the shared word segmentation (`pipeline.segment`):
CM (three flags, utterance level), IT (one intent per sentence, with its character span), SF (one token per word,
governing all WordPiece subwords of that word), plus the context's emotion distribution for retrieval.
Columns: `pipeline.schemas.CONTROLS`; their meaning: docs/controls.md.
"""
from collections.abc import Mapping, Sequence

import pandas as pd

from pipeline.errors import PipelineError
from pipeline.labels import MECHANISM_NAMES, MECHANISMS, SIGNALS
from pipeline.segment import word_sentence_index


def rows_for(table: pd.DataFrame, ids: pd.Series, name: str, stage: str) -> pd.DataFrame:
    """`table` reindexed to `ids` (one row each, same order); every id must appear exactly once."""
    if table["example_id"].duplicated().any():
        raise PipelineError(f"{name} repeats example_ids: rebuild it with `dvc repro {stage}`")
    out = table.set_index("example_id").reindex(ids)
    missing = ids[out.iloc[:, 0].isna().to_numpy()]
    if len(missing):
        raise PipelineError(f"{name} lacks {len(missing)} of {len(ids)} dialogues rows (first: {missing.iloc[0]}): "
                            f"rebuild it with `dvc repro {stage}`")
    return out.reset_index()


def first_mismatch(ids: pd.Series, a: pd.Series, b: pd.Series) -> str | None:
    """The first example_id whose list in `a` differs from the one in `b`, or None."""
    for eid, x, y in zip(ids, a, b):
        if list(x) != list(y):
            return eid
    return None


def build_controls(dialogues: pd.DataFrame, segments: pd.DataFrame, tags: pd.DataFrame, frames: pd.DataFrame) -> pd.DataFrame:
    """Assemble the control table: one row per dialogues row, in its order, with the CONTROLS columns.

    dialogues: DIALOGUES; segments: SEGMENTS; tags: TAGS; frames: FRAMES (each one row per example_id).
    Tags and frames must be built on the same segmentation as `segments` (sentence spans, words): checked here.
    """
    ids = dialogues["example_id"].reset_index(drop=True)
    seg = rows_for(segments, ids, "segments.parquet", "segment")
    tag = rows_for(tags, ids, "tags.parquet", "tag")
    fr = rows_for(frames, ids, "frames.parquet", "tag_frames")
    checks = [
        (first_mismatch(ids, seg["words"], fr["words"]), "frames.parquet has other words than segments.parquet", "tag_frames"),
        (first_mismatch(ids, seg["sent_starts"], tag["sent_starts"]) or first_mismatch(ids, seg["sent_ends"], tag["sent_ends"]),
         "tags.parquet has other sentence spans than segments.parquet", "tag"),
    ]
    for eid, what, stage in checks:
        if eid is not None:
            raise PipelineError(f"{what} (first: {eid}): rebuild it with `dvc repro {stage}`")
    bad = [eid for eid, i, s in zip(ids, tag["intents"], tag["sent_starts"]) if len(i) != len(s)]
    if bad:
        raise PipelineError(f"tags.parquet: {len(bad)} rows without one intent per sentence (first: {bad[0]}): "
                            "rebuild it with `dvc repro tag`")
    d = dialogues.reset_index(drop=True)
    return pd.DataFrame({
        **{c: d[c] for c in ("example_id", "split", "conv_id", "emotion", "context", "response")},
        "words": seg["words"],
        "word_sent": [word_sentence_index(w, s) for w, s in zip(seg["word_starts"], seg["sent_starts"])],
        "sf": fr["sf"],
        "sent_starts": seg["sent_starts"],
        "sent_ends": seg["sent_ends"],
        "intents": tag["intents"],
        **{f"cm_{m}": tag[f"cm_{m}"].astype(bool) for m in MECHANISMS},
        "subword_ids": fr["subword_ids"],
        "subword_word": fr["subword_word"],
        "emotion_probs": tag["emotion_probs"],
    })


def control_sequence(row: Mapping, signals: Sequence[str] = SIGNALS) -> str:
    """The paper's flat control sequence of one row (any mapping with the CONTROL_FIELDS keys), coarse to fine:
    the names of the present mechanisms (EMOTIONAL_REACTION, ...), one intent per sentence, one SF token per word,
    all upper case (frames as in the paper: POSSIBILITY). `signals` keeps a subset (the paper's "w/o SF" ablations).

    e.g. "EXPLORATION SUGGESTING _ PRONOUN POSSIBILITY REQUEST _ ?"
    """
    unknown = set(signals) - set(SIGNALS)
    if unknown:
        raise PipelineError(f"unknown control signals {sorted(unknown)}: choose among {SIGNALS}")
    tokens = []
    if "cm" in signals:
        tokens += [MECHANISM_NAMES[m] for m in MECHANISMS if row[f"cm_{m}"]]
    if "it" in signals:
        tokens += [intent.upper() for intent in row["intents"]]
    if "sf" in signals:
        tokens += [sf.upper() for sf in row["sf"]]
    return " ".join(tokens)
