"""Apply every control-signal tagger to any (context, response) pairs; compare our intent tagger with EI's labels.

`Taggers.tag` is the reusable API: stage `tag` runs it on ED, scoring runs it on generated responses, with whichever
variant train_taggers saved (`load_tagger` reads either).
"""
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from pipeline.embeddings import context_text, sentence_texts
from pipeline.errors import PipelineError
from pipeline.finetune import FinetunedTagger
from pipeline.labels import INTENTS, MECHANISMS
from pipeline.schemas import TAGS
from pipeline.taggers import TAGGERS, Embed, FrozenTagger, Tagger
from pipeline.tagger_data import CM_LABELS


@dataclass(frozen=True)
class TagParams:
    """params.yaml `tag`: a mechanism is present when its tagger's P(present) exceeds cm_threshold."""

    cm_threshold: float


def load_tagger(directory, embed: Embed | None = None) -> Tagger:
    """The tagger saved in `directory`, of the variant it was saved as. embed: what a frozen tagger embeds texts with
    (default: the encoder); a fine-tuned one reads the texts themselves."""
    if Tagger.read_meta(directory, [])["variant"] == "finetuned":
        return FinetunedTagger.load(directory)
    return FrozenTagger.load(directory, embed)


class Taggers:
    """The three tagger models: cm (heads cm_er, cm_ip, cm_ex), intent and emotion."""

    def __init__(self, taggers: dict[str, Tagger]):
        self.taggers = taggers

    @classmethod
    def load(cls, models_dir, embed: Embed | None = None, names: Sequence[str] = TAGGERS) -> "Taggers":
        """Load models_dir/<name>/ for each of `names`; a missing one names the `dvc repro train_taggers@<name>` to
        run."""
        return cls({name: load_tagger(Path(models_dir) / name, embed) for name in names})

    def tag(self, contexts: Sequence[Sequence[str]], responses: Sequence[str], segments: Sequence[dict],
            cm_threshold: float = 0.5) -> pd.DataFrame:
        """Tag n (context, response) pairs -> DataFrame with the TAGS columns except example_id, same row order.

        contexts: utterances before each response, oldest first (one text: `context_text`); segments:
        `pipeline.segment.segment_texts` rows of the responses (only sent_starts / sent_ends are read).
        CM: P(present) of each mechanism given (context, response), present if > cm_threshold. Intent: one per sentence.
        Emotion: the 32-way distribution of the context.
        """
        ctx = [context_text(c) for c in contexts]
        out = pd.DataFrame(index=range(len(responses)))
        p_present = self.mechanisms(ctx, responses)  # [n, 3]
        for j, mech in enumerate(MECHANISMS):
            out[f"cm_{mech}"], out[f"p_{mech}"] = p_present[:, j] > cm_threshold, p_present[:, j]
        out["sent_starts"] = [list(s["sent_starts"]) for s in segments]
        out["sent_ends"] = [list(s["sent_ends"]) for s in segments]
        out["intents"] = self.intents(responses, segments)
        out["emotion_probs"] = list(self.taggers["emotion"].predict_proba(ctx)["emotion"])  # each [32], labels.EMOTIONS
        return out[[f.name for f in TAGS if f.name != "example_id"]]

    def mechanisms(self, contexts: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        """P(present) of each mechanism given (context text, response) -> [n, 3] (columns labels.MECHANISMS)."""
        cm = self.taggers["cm"].predict_proba(list(responses), list(contexts))  # {cm_er: [n, 2], ...}
        present = CM_LABELS.index("present")
        return np.stack([cm[f"cm_{mech}"][:, present] for mech in MECHANISMS], axis=1)

    def intents(self, responses: Sequence[str], segments: Sequence[dict]) -> list[list[str]]:
        """One intent per sentence of each response (segments: its sent_starts / sent_ends)."""
        sents = [sentence_texts(r, s["sent_starts"], s["sent_ends"]) for r, s in zip(responses, segments)]
        intents = list(self.taggers["intent"].predict([t for ss in sents for t in ss])["intent"])  # [n_sentences]
        bounds = np.cumsum([0] + [len(ss) for ss in sents])
        return [intents[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def normalise(text: str) -> str:
    """Compare ED texts across exports: lower case, ED's `_comma_` as a comma, whitespace collapsed."""
    return re.sub(r"\s+", " ", text.replace("_comma_", ",").lower()).strip()


def read_ei_annotations(annotated_dir) -> pd.DataFrame:
    """EI's labelled ED utterances -> DataFrame[Dialog_ID, Type, Actor, Text, Label, turn], situations left out."""
    paths = sorted(Path(annotated_dir).glob("*.csv"))
    if not paths:
        raise PipelineError(f"{annotated_dir}: no EmpatheticIntents `<emotion>.csv` files: build data/raw with "
                            "`dvc repro download`")
    df = pd.concat([pd.read_csv(p, dtype=str, keep_default_na=False) for p in paths], ignore_index=True)
    df = df[df["Type"] == "utterance"].copy()
    df["turn"] = df.groupby("Dialog_ID").cumcount()  # utterance order within the conversation, as in dialogues.turn
    return df


def ei_peer_check(annotated_dir, dialogues: pd.DataFrame, intent: Tagger) -> dict:
    """Agreement of our intent tagger with the EmpatheticIntents authors' classifier on ED listener turns.

    Their `<emotion>.csv` rows are joined to dialogues (schema DIALOGUES) on conv_id = Dialog_ID and turn = the
    utterance's 0-based position in its conversation; a join counts only if both texts agree after `normalise` and their
    Actor is the listener. We compare where their label is one of the 9 intents (they label whole utterances, sometimes
    with an emotion): our label is the intent tagger applied to the whole response, not per sentence.
    """
    theirs = read_ei_annotations(annotated_dir)
    joined = dialogues[["conv_id", "turn", "response"]].merge(
        theirs, left_on=["conv_id", "turn"], right_on=["Dialog_ID", "turn"], how="inner")
    same = [normalise(a) == normalise(b) for a, b in zip(joined["response"], joined["Text"])]
    joined = joined[np.array(same, dtype=bool) & (joined["Actor"] == "listener").to_numpy()]
    compared = joined[joined["Label"].isin(INTENTS)]
    if compared.empty:
        raise PipelineError(f"no ED listener turn could be joined to {annotated_dir}: check that dialogues.parquet "
                            "keeps ED's conv_id and utterance order")
    ours = intent.predict(list(compared["response"]))["intent"]
    return {
        "how": "our intent tagger on the whole listener utterance vs the EI authors' label, where that label is an "
               "intent; joined on (conv_id, utterance index) with matching text",
        "n_listener_turns": int(len(dialogues)),
        "n_joined": int(len(joined)),
        "n_compared": int(len(compared)),
        "accuracy": round(100 * float(np.mean(ours == compared["Label"].to_numpy())), 2),
        "cohen_kappa": round(float(cohen_kappa_score(compared["Label"], ours)), 4),
    }
