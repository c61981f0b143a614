"""Control-signal taggers: the frozen MiniLM sentence encoder + a scikit-learn logistic-regression head per tagger.

A tagger sees embeddings, never raw text: `embed(texts) -> float32 [n, 384]` is supplied by the caller (the encoder
directly, or the shared store of stage `encode`), so a text shared by several taggers is encoded once.
- "pair" taggers (CM: ER, IP, EX) see the seeker/context c and the response r as features [c, r, c*r]: [n, 1152].
- "text" taggers (intent, emotion) see one text: [n, 384].
On disk (models/taggers/<name>/): head.joblib (the fitted scikit-learn pipeline) and tagger.json (name, label list in
output order, input kind, encoder identity and settings, chosen hyper-parameters).
"""
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

from pipeline.errors import PipelineError, missing_artifact
from pipeline.io import atomic_path, write_json
from pipeline.labels import EMOTIONS, INTENTS
from pipeline.models import ENCODER_NAME
from pipeline.progress import log
from pipeline.tagger_data import CM_LABELS


@dataclass(frozen=True)
class TaggerParams:
    """params.yaml `train_taggers`: the C grid of the logistic-regression head, its iterations and class weighting."""

    C: list[float]
    max_iter: int
    class_weight: Literal["balanced", None]
    finetune: bool

Embed = Callable[[Sequence[str]], np.ndarray]  # texts -> float32 [n, 384]


@dataclass(frozen=True)
class TaggerSpec:
    inputs: str  # "pair" (context + response) or "text"
    labels: tuple[str, ...]  # output order of predict_proba
    paper: tuple[float, float] | None  # the paper's Table 1 (accuracy, F1), in percent


TAGGERS: dict[str, TaggerSpec] = {
    "cm_er": TaggerSpec("pair", CM_LABELS, (79.43, 74.46)),
    "cm_ip": TaggerSpec("pair", CM_LABELS, (84.04, 62.60)),
    "cm_ex": TaggerSpec("pair", CM_LABELS, (92.61, 72.58)),
    "intent": TaggerSpec("text", INTENTS, (87.75, 87.71)),
    "emotion": TaggerSpec("text", EMOTIONS, None),  # the paper reports no figure for its retrieval emotion classifier
}


def features(inputs: str, e_text: np.ndarray, e_context: np.ndarray | None = None) -> np.ndarray:
    """Head input: e_text [n, 384] for "text"; [c, r, c*r] -> [n, 1152] for "pair" (e_context = c, e_text = r)."""
    if inputs == "text":
        return e_text
    return np.concatenate([e_context, e_text, e_context * e_text], axis=1)


def scores(y_true, y_pred) -> dict:
    """Accuracy, macro-F1 and support-weighted F1 in percent (the paper's Table 1 units; it does not say which F1)."""
    return {"accuracy": round(100 * accuracy_score(y_true, y_pred), 2),
            "macro_f1": round(100 * f1_score(y_true, y_pred, average="macro", zero_division=0), 2),
            "weighted_f1": round(100 * f1_score(y_true, y_pred, average="weighted", zero_division=0), 2),
            "n": int(len(y_true))}


class Tagger:
    """One fitted tagger: `predict_proba(e_text, e_context)` -> [n, len(labels)] in `labels` order."""

    def __init__(self, name: str, head, encoder: dict, hparams: dict):
        self.name, self.head, self.encoder, self.hparams = name, head, encoder, hparams
        self.spec = TAGGERS[name]
        self.labels = self.spec.labels
        classes = list(head.classes_)
        missing = set(self.labels) - set(classes)
        if missing:
            raise PipelineError(f"tagger {name}: labels {sorted(missing)} never occur in its training data")
        self.columns = [classes.index(label) for label in self.labels]  # head's sorted classes -> label order

    def predict_proba(self, e_text: np.ndarray, e_context: np.ndarray | None = None) -> np.ndarray:
        if len(e_text) == 0:
            return np.empty((0, len(self.labels)), dtype=np.float32)
        probs = self.head.predict_proba(features(self.spec.inputs, e_text, e_context))
        return probs[:, self.columns].astype(np.float32)

    def predict(self, e_text: np.ndarray, e_context: np.ndarray | None = None) -> np.ndarray:
        """Most probable label per row -> str [n]."""
        return np.asarray(self.labels, dtype=object)[self.predict_proba(e_text, e_context).argmax(1)]

    def save(self, directory) -> None:
        directory = Path(directory)
        with atomic_path(directory / "head.joblib", ".joblib") as tmp:
            joblib.dump(self.head, tmp)
        write_json(directory / "tagger.json", {"name": self.name, "labels": list(self.labels), "inputs": self.spec.inputs,
                                               "encoder": self.encoder, "hparams": self.hparams})

    @classmethod
    def load(cls, directory) -> "Tagger":
        directory = Path(directory)
        meta_path, head_path = directory / "tagger.json", directory / "head.joblib"
        for path in (meta_path, head_path):
            if not path.exists():
                raise missing_artifact(path, f"train_taggers@{directory.name}")
        meta = json.loads(meta_path.read_text())
        name = meta["name"]
        if name not in TAGGERS or tuple(meta["labels"]) != TAGGERS[name].labels:
            raise PipelineError(f"{meta_path}: label list differs from this code's: rerun `dvc repro train_taggers@{name}`")
        if meta["encoder"]["name"] != ENCODER_NAME:
            raise PipelineError(f"{meta_path}: trained on encoder {meta['encoder']['name']!r}, this code uses "
                                f"{ENCODER_NAME!r}: rerun `dvc repro train_taggers@{name}`")
        return cls(name, joblib.load(head_path), meta["encoder"], meta["hparams"])


def embed_splits(inputs: str, splits: dict[str, pd.DataFrame], embed: Embed) -> dict[str, np.ndarray]:
    """Head inputs per split (see `features`); every distinct text, contexts included, is embedded once.

    splits: {split: DataFrame[context, text, label]}.
    """
    columns = ("context", "text") if inputs == "pair" else ("text",)
    texts = [t for df in splits.values() for col in columns for t in df[col]]
    distinct = list(dict.fromkeys(texts))
    vectors = embed(distinct)  # [n_distinct, 384]
    row = {t: i for i, t in enumerate(distinct)}

    def lookup(col: pd.Series) -> np.ndarray:
        return vectors[[row[t] for t in col]]

    return {s: features(inputs, lookup(df["text"]), lookup(df["context"]) if inputs == "pair" else None)
            for s, df in splits.items()}


def train_tagger(name: str, splits: dict[str, pd.DataFrame], embed: Embed, cfg: TaggerParams, encoder: dict,
                 seed: int) -> tuple[Tagger, dict]:
    """Fit tagger `name` on splits["train"], pick C on splits["valid"] macro-F1, score valid and test.

    splits: {train, valid, test: DataFrame[context, text, label]}; cfg: params `train_taggers` (C grid, max_iter,
    class_weight, finetune); encoder: identity and settings of the encoder behind `embed`.
    Returns the tagger and its metrics (chosen C, accuracy and macro-F1 in percent per held-out split).
    """
    if cfg.finetune:
        raise PipelineError("train_taggers.finetune: end-to-end fine-tuning of the encoder is not implemented yet; "
                            "set it to false in params.yaml")
    spec = TAGGERS[name]
    X = embed_splits(spec.inputs, splits, embed)
    y = {s: df["label"].to_numpy() for s, df in splits.items()}
    best = None
    for C in cfg.C:
        head = make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=cfg.max_iter,
                                                                  class_weight=cfg.class_weight, random_state=seed))
        head.fit(X["train"], y["train"])
        valid = scores(y["valid"], head.predict(X["valid"]))
        log(f"[{name}] C={C}: valid accuracy {valid['accuracy']}, macro-F1 {valid['macro_f1']}")
        if best is None or valid["macro_f1"] > best[0]["macro_f1"]:
            best = (valid, C, head)
    valid, C, head = best
    hparams = {"C": C, "class_weight": cfg.class_weight, "max_iter": cfg.max_iter}
    tagger = Tagger(name, head, encoder, hparams)
    metrics = {"tagger": name, **hparams, "n_train": int(len(y["train"])), "valid": valid,
               "test": scores(y["test"], head.predict(X["test"]))}
    return tagger, metrics
