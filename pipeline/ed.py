"""EmpatheticDialogues: parse the release CSVs, build one example per listener turn, measure lengths.

The release files are not real CSV: no quoting, commas inside text written as `_comma_`, unescaped `"` inside fields,
and some lines with extra free-text fields (selfeval, tags). So each line is split on ',' and fields 0-5 are taken by
position: conv_id, utterance_idx, context (the emotion), prompt (the situation), speaker_idx, utterance.
"""
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.errors import PipelineError
from pipeline.labels import EMOTIONS

N_FIELDS = 6
# Why a line was skipped, and why a listener turn was dropped. The report lists every key, zeros included.
MALFORMED = ("too_few_fields", "bad_utterance_idx", "unknown_emotion", "duplicate_utterance", "not_utf8")
DROPPED = ("empty_response", "empty_context")


@dataclass(frozen=True)
class PrepareParams:
    """params.yaml `prepare`: the largest fraction of an ED split's lines that may be malformed before it fails."""

    max_malformed_frac: float


@dataclass(frozen=True)
class Utterance:
    conv_id: str
    idx: int  # ED utterance_idx: 1-based, the speaker (prompt writer) has the odd ones
    emotion: str
    situation: str
    text: str


def clean(field: str) -> str:
    return field.replace("_comma_", ",").strip()


def parse_lines(lines: Iterable[bytes]) -> tuple[list[Utterance], Counter]:
    """Parse raw lines of one release CSV (header included); return the utterances and a count per MALFORMED reason.

    Lines are bytes so that only b"\\n" ends a line (a stray "\\r" inside a field must not split it).
    """
    utterances, problems = [], Counter()
    for raw in lines:
        try:
            line = raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError:
            problems["not_utf8"] += 1
            continue
        fields = line.split(",")
        if fields[0] == "conv_id":  # the header
            continue
        if len(fields) < N_FIELDS or not fields[0]:
            problems["too_few_fields"] += 1
            continue
        conv_id, idx, emotion, situation, _speaker, text = fields[:N_FIELDS]
        if not (idx.isascii() and idx.isdigit()) or int(idx) < 1:
            problems["bad_utterance_idx"] += 1
        elif emotion.strip() not in EMOTIONS:
            problems["unknown_emotion"] += 1
        else:
            utterances.append(Utterance(conv_id, int(idx), emotion.strip(), clean(situation), clean(text)))
    return utterances, problems


def listener_turns(utterances: list[Utterance], split: str) -> tuple[list[dict], Counter, Counter]:
    """One example per listener turn (the DIALOGUES columns), in file order of conversations and turn order within them.

    A listener turn is an utterance with an even utterance_idx (turn = utterance_idx - 1, odd): parity of the release's
    own index rather than position, so a dropped malformed line cannot swap the roles of the utterances after it.
    Its context is every earlier non-empty utterance, oldest first. Returns (rows, problems: MALFORMED counts for
    repeated utterance_idx, dropped: DROPPED counts).
    """
    conversations: dict[str, dict[int, Utterance]] = {}
    problems, dropped = Counter(), Counter()
    for u in utterances:
        turns = conversations.setdefault(u.conv_id, {})
        if u.idx in turns:
            problems["duplicate_utterance"] += 1
        else:
            turns[u.idx] = u
    rows = []
    for conv_id, turns in conversations.items():
        ordered = [turns[i] for i in sorted(turns)]
        first = ordered[0]
        for pos, u in enumerate(ordered):
            if u.idx % 2:
                continue
            context = [p.text for p in ordered[:pos] if p.text]
            if not u.text:
                dropped["empty_response"] += 1
            elif not context:
                dropped["empty_context"] += 1
            else:
                turn = u.idx - 1
                rows.append({"example_id": f"{conv_id}:{turn}", "split": split, "conv_id": conv_id, "turn": turn,
                             "emotion": first.emotion, "situation": first.situation, "context": context,
                             "response": u.text})
    return rows, problems, dropped


def read_split(path: Path, split: str, max_malformed_frac: float) -> tuple[list[dict], dict]:
    """Parse one release CSV into listener-turn rows; return (rows, report of lines/conversations/malformed/dropped).

    Raises PipelineError when more than `max_malformed_frac` of the lines are malformed or no listener turn is left.
    """
    if not path.exists():
        raise PipelineError(f"{path} not found: build it with `dvc repro download`")
    with open(path, "rb") as f:
        lines = f.readlines()
    utterances, problems = parse_lines(lines)
    rows, repeated, dropped = listener_turns(utterances, split)
    problems += repeated
    n_bad = sum(problems.values())
    if n_bad > max_malformed_frac * len(lines):
        bad = ", ".join(f"{k} {v}" for k, v in problems.items() if v)
        raise PipelineError(f"{path}: {n_bad} of {len(lines)} lines are malformed ({bad}): is it the ED release format? "
                            f"(limit prepare.max_malformed_frac={max_malformed_frac})")
    if not rows:
        raise PipelineError(f"{path}: no listener turn found: is it the ED release format?")
    report = {"lines": len(lines), "conversations": len({u.conv_id for u in utterances}), "rows": len(rows),
              "malformed": {k: problems[k] for k in MALFORMED}, "dropped": {k: dropped[k] for k in DROPPED}}
    return rows, report


def read_release(ed_dir, splits: Iterable[str], max_malformed_frac: float) -> tuple[list[dict], dict]:
    """All splits' rows (train, valid, test order) and {split: report}. A conv_id in two splits is an error."""
    rows, reports, owner = [], {}, {}
    for split in splits:
        split_rows, reports[split] = read_split(Path(ed_dir) / f"{split}.csv", split, max_malformed_frac)
        for conv_id in dict.fromkeys(r["conv_id"] for r in split_rows):
            if owner.setdefault(conv_id, split) != split:
                raise PipelineError(f"conversation {conv_id} is in both {owner[conv_id]} and {split}: the ED files "
                                    f"in {ed_dir} are not the official split")
        rows += split_rows
    return rows, reports


def length_summary(lengths) -> dict:
    """mean, median, p95 and max of a list of token counts."""
    a = np.asarray(lengths, dtype=np.int64)
    return {"mean": round(float(a.mean()), 2), "median": float(np.median(a)), "p95": round(float(np.percentile(a, 95)), 2),
            "max": int(a.max())}


def wordpiece_length_stats(rows: list[dict], tokenizer) -> dict:
    """{split: {"context_tokens": summary, "response_tokens": summary}} in WordPiece tokens without special tokens.

    A context counts the tokens of all its utterances (no separators). Each distinct text is tokenised once.
    """
    texts = list(dict.fromkeys(t for r in rows for t in (*r["context"], r["response"])))
    ids = tokenizer(texts, add_special_tokens=False, return_attention_mask=False, return_token_type_ids=False)["input_ids"]
    n_tokens = dict(zip(texts, map(len, ids)))
    stats = {}
    for split in dict.fromkeys(r["split"] for r in rows):
        split_rows = [r for r in rows if r["split"] == split]
        stats[split] = {
            "context_tokens": length_summary([sum(n_tokens[t] for t in r["context"]) for r in split_rows]),
            "response_tokens": length_summary([n_tokens[r["response"]] for r in split_rows]),
        }
    return stats
