"""Control-signal taggers: what each one tags, its settings, its scores, the interface of both variants, and the frozen
variant (the fine-tuned one is pipeline/finetune.py).

Three tagger models, five heads (pipeline/tagger_data.py builds their data):
- cm, a "pair" tagger: it reads the seeker post / dialogue context c and the response r; heads cm_er, cm_ip, cm_ex
  (absent/present each: the three EPITOME files label the same pairs, so one model serves all three);
- intent (9 classes, one sentence) and emotion (32 classes, a dialogue context): "text" taggers.
Both variants answer `predict_proba(texts, contexts=None) -> {head: float32 [n, len(HEADS[head])]}`:
- frozen: the frozen MiniLM sentence embeddings and one scikit-learn logistic-regression head per head. It embeds
  texts with the `embed` function it is given (the encoder by default; stage `tag` gives it the shared store of stage
  `encode`). Head input: [n, 384] for text taggers, [c, r, c*r] -> [n, 1152] for the pair tagger.
- finetuned: MiniLM trained end to end, a cross-encoder of (c, r) for the pair tagger.
On disk (models/taggers/<name>/): tagger.json (name, variant, heads and their labels, encoder identity and the `encode`
truncation, settings) and the variant's weights: heads.joblib (frozen) or encoder.json + model.pt (finetuned).
"""
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.embeddings import encode_texts
from pipeline.errors import PipelineError, missing_artifact
from pipeline.io import atomic_path, write_json
from pipeline.labels import EMOTIONS, INTENTS
from pipeline.models import ENCODER_NAME
from pipeline.precision import Bf16
from pipeline.progress import log
from pipeline.tagger_data import CM_LABELS

MAX_POSITIONS = 512  # MiniLM's position embeddings: the longest input a fine-tuned tagger can read


@dataclass(frozen=True)
class TaggerParams:
    """params.yaml `train_taggers`: the frozen head (C grid, max_iter, class_weight), whether to fine-tune, and the
    fine-tuning settings (pipeline/finetune.py; params.yaml says what each one is)."""

    C: list[float]
    max_iter: int
    class_weight: Literal["balanced", None]
    finetune: bool
    emotion_situations: bool
    lr: float
    weight_decay: float
    epochs: int
    epoch_size: int | None
    batch_size: int
    warmup: float
    patience: int
    max_context_tokens: int
    max_text_tokens: int
    bf16: Bf16

    def __post_init__(self):
        problems = [f"{key}={getattr(self, key)} must be positive"
                    for key in ("max_iter", "lr", "epochs", "batch_size", "patience", "max_context_tokens",
                                "max_text_tokens") if getattr(self, key) <= 0]
        if not self.C or min(self.C) <= 0:
            problems.append(f"C={self.C} must be a non-empty list of positive numbers")
        if self.epoch_size is not None and self.epoch_size <= 0:
            problems.append(f"epoch_size={self.epoch_size} must be positive or null")
        if self.weight_decay < 0:
            problems.append(f"weight_decay={self.weight_decay} must be >= 0")
        if not 0 <= self.warmup < 1:
            problems.append(f"warmup={self.warmup} must be a fraction of the steps in [0, 1)")
        longest = self.max_context_tokens + self.max_text_tokens + 3  # [CLS] context [SEP] text [SEP]
        if longest > MAX_POSITIONS:
            problems.append(f"max_context_tokens + max_text_tokens + 3 = {longest} exceeds MiniLM's {MAX_POSITIONS} "
                            "positions")
        if problems:
            raise PipelineError(f"params.yaml `train_taggers`: {'; '.join(problems)}")


Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> float32 [n, 384]


@dataclass(frozen=True)
class TaggerSpec:
    inputs: Literal["pair", "text"]  # pair: (context, response); text: one text
    heads: tuple[str, ...]  # the control signals it tags, one classification head each


HEADS: dict[str, tuple[str, ...]] = {  # head -> its labels, in the column order of predict_proba
    "cm_er": CM_LABELS, "cm_ip": CM_LABELS, "cm_ex": CM_LABELS, "intent": INTENTS, "emotion": EMOTIONS}
PAPER: dict[str, tuple[float, float]] = {  # the paper's Table 1 (accuracy, F1) in percent; none for the emotion tagger
    "cm_er": (79.43, 74.46), "cm_ip": (84.04, 62.60), "cm_ex": (92.61, 72.58), "intent": (87.75, 87.71)}
TAGGERS: dict[str, TaggerSpec] = {
    "cm": TaggerSpec("pair", ("cm_er", "cm_ip", "cm_ex")),
    "intent": TaggerSpec("text", ("intent",)),
    "emotion": TaggerSpec("text", ("emotion",)),
}


def scores(y_true, y_pred, labels: Sequence[str]) -> dict:
    """Accuracy, macro-F1 and support-weighted F1 in percent (the paper's Table 1 units; it does not say which F1),
    the number of examples and the F1 of each label."""
    per_class = f1_score(y_true, y_pred, labels=list(labels), average=None, zero_division=0)
    return {"accuracy": round(100 * accuracy_score(y_true, y_pred), 2),
            "macro_f1": round(100 * f1_score(y_true, y_pred, average="macro", zero_division=0), 2),
            "weighted_f1": round(100 * f1_score(y_true, y_pred, average="weighted", zero_division=0), 2),
            "n": int(len(y_true)),
            "per_class_f1": {label: round(100 * float(f), 2) for label, f in zip(labels, per_class)}}


class Tagger:
    """A trained tagger of either variant. Subclasses set `variant` and implement predict_proba, save and load."""

    variant: str
    bf16 = False  # whether it predicts under bfloat16 autocast (the frozen variant: float32 embeddings, sklearn heads)

    def __init__(self, name: str, encoder: dict, hparams: dict):
        if name not in TAGGERS:
            raise PipelineError(f"unknown tagger {name!r}: use one of {', '.join(TAGGERS)}")
        self.name, self.spec, self.encoder, self.hparams = name, TAGGERS[name], encoder, hparams

    def predict_proba(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """{head: float32 [n, len(HEADS[head])]}, row i for texts[i] (and contexts[i]: pair tagger only, else None)."""
        raise NotImplementedError

    def predict(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The most probable label of each row, per head -> {head: str [n]}."""
        return {head: np.asarray(HEADS[head], dtype=object)[p.argmax(1)]
                for head, p in self.predict_proba(texts, contexts).items()}

    def check_inputs(self, texts: Sequence[str], contexts: Sequence[str] | None) -> None:
        if (contexts is not None) != (self.spec.inputs == "pair"):
            reads = "(context, text) pairs" if self.spec.inputs == "pair" else "texts alone"
            raise PipelineError(f"tagger {self.name} reads {reads}")
        if contexts is not None and len(contexts) != len(texts):
            raise PipelineError(f"tagger {self.name}: {len(texts)} texts but {len(contexts)} contexts")

    def save_meta(self, directory) -> None:
        write_json(Path(directory) / "tagger.json", {
            "name": self.name, "variant": self.variant, "inputs": self.spec.inputs,
            "heads": {head: list(HEADS[head]) for head in self.spec.heads}, "encoder": self.encoder,
            "hparams": self.hparams})

    @staticmethod
    def read_meta(directory, files: Sequence[str]) -> dict:
        """tagger.json of `directory`, checked against this code, once `files` (the variant's) exist too."""
        directory = Path(directory)
        for path in [directory / "tagger.json", *(directory / f for f in files)]:
            if not path.exists():
                raise missing_artifact(path, f"train_taggers@{directory.name}")
        meta = json.loads((directory / "tagger.json").read_text())
        name, rerun = meta["name"], f"rerun `dvc repro train_taggers@{meta['name']}`"
        if name not in TAGGERS or meta["heads"] != {h: list(HEADS[h]) for h in TAGGERS[name].heads}:
            raise PipelineError(f"{directory / 'tagger.json'}: heads or labels differ from this code's: {rerun}")
        if meta["encoder"]["name"] != ENCODER_NAME:
            raise PipelineError(f"{directory / 'tagger.json'}: trained on encoder {meta['encoder']['name']!r}, this "
                                f"code uses {ENCODER_NAME!r}: {rerun}")
        return meta


def features(inputs: str, embed: Embed, texts: Sequence[str], contexts: Sequence[str] | None = None) -> np.ndarray:
    """Frozen head input: embeddings of texts [n, 384] ("text"), or [c, r, c*r] -> [n, 1152] ("pair", c = the
    contexts' embeddings, r = the texts'). Every distinct text, contexts included, is embedded once."""
    texts, contexts = list(texts), None if contexts is None else list(contexts)
    distinct = list(dict.fromkeys([*texts, *(contexts or [])]))
    vectors = embed(distinct)  # [n_distinct, 384]
    row = {t: i for i, t in enumerate(distinct)}
    e_text = vectors[[row[t] for t in texts]]
    if inputs == "text":
        return e_text
    e_context = vectors[[row[c] for c in contexts]]
    return np.concatenate([e_context, e_text, e_context * e_text], axis=1)


class FrozenTagger(Tagger):
    """Frozen MiniLM embeddings + a logistic-regression head per head (heads: {head: fitted scikit-learn pipeline}).

    embed: texts -> [n, 384]; default: the encoder itself, with the truncation the heads were trained with."""

    variant = "frozen"

    def __init__(self, name: str, heads: dict, encoder: dict, hparams: dict, embed: Embed | None = None):
        super().__init__(name, encoder, hparams)
        self.heads = heads
        self.embed = embed or functools.partial(encode_texts, max_seq_length=encoder["max_seq_length"])
        self.columns = {}  # head -> the columns of its classifier's sorted classes, in HEADS order
        for head, clf in heads.items():
            classes = list(clf.classes_)
            missing = set(HEADS[head]) - set(classes)
            if missing:
                raise PipelineError(f"tagger {name}: {head} labels {sorted(missing)} never occur in its training data")
            self.columns[head] = [classes.index(label) for label in HEADS[head]]

    def predict_proba(self, texts: Sequence[str], contexts: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        self.check_inputs(texts, contexts)
        if len(texts) == 0:
            return {head: np.empty((0, len(HEADS[head])), dtype=np.float32) for head in self.heads}
        x = features(self.spec.inputs, self.embed, texts, contexts)
        return {head: clf.predict_proba(x)[:, self.columns[head]].astype(np.float32)
                for head, clf in self.heads.items()}

    def save(self, directory) -> None:
        with atomic_path(Path(directory) / "heads.joblib", ".joblib") as tmp:
            joblib.dump(self.heads, tmp)
        self.save_meta(directory)

    @classmethod
    def load(cls, directory, embed: Embed | None = None) -> "FrozenTagger":
        meta = cls.read_meta(directory, ["heads.joblib"])
        return cls(meta["name"], joblib.load(Path(directory) / "heads.joblib"), meta["encoder"], meta["hparams"], embed)


def train_frozen(name: str, splits: dict[str, pd.DataFrame], embed: Embed, cfg: TaggerParams, encoder: dict,
                 seed: int) -> tuple[FrozenTagger, dict]:
    """Fit the frozen heads of tagger `name` on splits["train"], pick each head's C on splits["valid"] macro-F1.

    splits: {train, valid, test: DataFrame[context, text, <head>...]}; embed: the encoder behind the features (its
    identity and settings: `encoder`). Returns the tagger and its metrics:
    {"hparams", "heads": {head: {C, valid, test}}} with `scores` per held-out split.
    """
    spec = TAGGERS[name]
    x = {s: features(spec.inputs, embed, df["text"], df["context"] if spec.inputs == "pair" else None)
         for s, df in splits.items()}
    heads, metrics = {}, {}
    for head in spec.heads:
        y = {s: df[head].to_numpy() for s, df in splits.items()}
        best = None
        for C in cfg.C:
            clf = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=cfg.max_iter,
                                                                     class_weight=cfg.class_weight, random_state=seed))
            clf.fit(x["train"], y["train"])
            valid = scores(y["valid"], clf.predict(x["valid"]), HEADS[head])
            log(f"[{name} frozen] {head} C={C}: valid accuracy {valid['accuracy']}, macro-F1 {valid['macro_f1']}")
            if best is None or valid["macro_f1"] > best[0]["macro_f1"]:
                best = (valid, C, clf)
        valid, C, heads[head] = best
        metrics[head] = {"C": C, "valid": valid, "test": scores(y["test"], heads[head].predict(x["test"]), HEADS[head])}
    hparams = {"C": {head: m["C"] for head, m in metrics.items()}, "class_weight": cfg.class_weight,
               "max_iter": cfg.max_iter}
    return FrozenTagger(name, heads, encoder, hparams, embed), {"hparams": hparams, "heads": metrics}
