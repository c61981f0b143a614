"""Training data of the control-signal taggers, as {split: DataFrame[context, text, <head>...]} with splits
train/valid/test and one label column per head of the tagger (pipeline.taggers.TAGGERS).

- cm (heads cm_er, cm_ip, cm_ex): EPITOME Reddit (seeker post = context, response post = text), each mechanism "present"
  if its level > 0; duplicate pairs dropped, then one 80/10/10 split for all three, stratified on the three labels
  together and drawn from the seed (EPITOME has no official split).
- intent: EmpatheticIntents `lexically_extended_intent_data` (official train/validation/test), 9 classes, text only.
- emotion: ED dialogue contexts (`context_text`, situation-free) with the conversation's emotion, ED's own split;
  `with_situations` adds the situation descriptions of ED's training conversations to the training split only.
`context` is None for the text-only taggers.
"""
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from pipeline.embeddings import context_text
from pipeline.errors import PipelineError
from pipeline.labels import EMOTIONS, INTENTS, MECHANISMS

SPLITS = ("train", "valid", "test")
EPITOME_FILES = {"er": "emotional-reactions-reddit.csv", "ip": "interpretations-reddit.csv",
                 "ex": "explorations-reddit.csv"}
CM_LABELS = ("absent", "present")
INTENT_FOLDERS = {"train": "train", "valid": "validation", "test": "test"}
INTENT_FILE_TYPOS = {"acknowleding": "acknowledging"}  # the upstream file name of `acknowledging`
MIN_STRATUM = 10  # rows a stratum needs so that each 10% split gets one


def load_epitome(epitome_dir) -> pd.DataFrame:
    """The three EPITOME Reddit files joined row-wise -> DataFrame[seeker, response, er, ip, ex] (levels 0/1/2).

    The files hold the same pairs in the same order (checked on the ids; the texts differ in whitespace only, so those
    of the ER file are kept). A (seeker, response) pair listed more than once keeps its first row, so no pair can land
    in two splits.
    """
    frames = {}
    for mech, name in EPITOME_FILES.items():
        path = Path(epitome_dir) / name
        if not path.exists():
            raise PipelineError(f"{path} not found: build data/raw with `dvc repro download`")
        frames[mech] = pd.read_csv(path)
    first = frames["er"]
    for mech, frame in frames.items():
        if not frame[["sp_id", "rp_id"]].equals(first[["sp_id", "rp_id"]]):
            raise PipelineError(f"{EPITOME_FILES[mech]} does not list the same (sp_id, rp_id) pairs in the same order "
                                f"as {EPITOME_FILES['er']}: re-download EPITOME")
    df = pd.DataFrame({"sp_id": first["sp_id"], "rp_id": first["rp_id"],
                       "seeker": first["seeker_post"].fillna(""), "response": first["response_post"].fillna("")})
    for mech in MECHANISMS:
        df[mech] = frames[mech]["level"].astype(int)
    return df.drop_duplicates(["sp_id", "rp_id"]).drop(columns=["sp_id", "rp_id"]).reset_index(drop=True)


def strata(labels: pd.Series) -> pd.Series:
    """`labels` with its values rarer than MIN_STRATUM rows pooled into one stratum (into the most common value if they
    are too few even together), so that every stratum can be split 80/10/10."""
    rare = labels.map(labels.value_counts()) < MIN_STRATUM
    if rare.sum() < MIN_STRATUM and (~rare).any():
        return labels.where(~rare, labels[~rare].mode()[0])
    return labels.where(~rare, "(rare)")


def stratified_split(labels: pd.Series, seed: int) -> pd.Series:
    """A split name (train/valid/test, 80/10/10) per row, stratified on `labels` (rare values pooled: `strata`),
    deterministic for `seed`."""
    index, pooled = labels.index.to_numpy(), strata(labels)
    train, rest = train_test_split(index, test_size=0.2, stratify=pooled, random_state=seed)
    valid, test = train_test_split(rest, test_size=0.5, stratify=pooled.loc[rest], random_state=seed)
    split = pd.Series("train", index=labels.index)
    split.loc[valid], split.loc[test] = "valid", "test"
    return split


def cm_task(epitome_dir, seed: int) -> dict[str, pd.DataFrame]:
    """EPITOME pairs: context = seeker post, text = response, cm_er / cm_ip / cm_ex = absent/present."""
    df = load_epitome(epitome_dir)
    data = pd.DataFrame({"context": df["seeker"], "text": df["response"]})
    for mech in MECHANISMS:
        data[f"cm_{mech}"] = df[mech].gt(0).map({False: CM_LABELS[0], True: CM_LABELS[1]})
    split = stratified_split(data[[f"cm_{m}" for m in MECHANISMS]].agg("/".join, axis=1), seed)
    return {s: data[split == s].reset_index(drop=True) for s in SPLITS}


def intent_task(intent_dir) -> dict[str, pd.DataFrame]:
    """EmpatheticIntents lexically extended data: one `<intent>.txt` per class, lines `<label_id> <SEP> <text>`."""
    out = {}
    for split, folder in INTENT_FOLDERS.items():
        rows = []
        for path in sorted((Path(intent_dir) / folder).glob("*.txt")):
            label = INTENT_FILE_TYPOS.get(path.stem, path.stem)
            if label not in INTENTS:
                raise PipelineError(f"{path}: unknown intent file name (expected one of {', '.join(INTENTS)})")
            for line in path.read_text(encoding="utf-8").splitlines():
                _, sep, text = line.partition(" <SEP> ")
                if sep and text.strip():
                    rows.append((None, text.strip(), label))
        found = {r[2] for r in rows}
        if found != set(INTENTS):
            raise PipelineError(f"{Path(intent_dir) / folder}: intents {sorted(set(INTENTS) - found)} have no data: "
                                "re-download EmpatheticIntents")
        out[split] = pd.DataFrame(rows, columns=["context", "text", "intent"])
    return out


def emotion_task(dialogues: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Distinct (context text, emotion) pairs of ED per split. dialogues: schema DIALOGUES."""
    bad = set(dialogues["emotion"]) - set(EMOTIONS)
    if bad:
        raise PipelineError(f"dialogues.parquet has unknown emotions {sorted(bad)[:5]}: "
                            "rebuild it with `dvc repro prepare`")
    data = pd.DataFrame({"split": dialogues["split"], "context": None,
                         "text": [context_text(c) for c in dialogues["context"]], "emotion": dialogues["emotion"]})
    data = data.drop_duplicates(["split", "text", "emotion"])
    return {s: data[data["split"] == s].drop(columns="split").reset_index(drop=True) for s in SPLITS}


def with_situations(splits: dict[str, pd.DataFrame], dialogues: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """emotion_task's splits with the distinct non-empty situation descriptions of ED's training conversations (each
    with its conversation's emotion, context None) appended to the training split; valid and test stay contexts, so
    held-out scores still measure the context-only task. dialogues: schema DIALOGUES."""
    train = dialogues[dialogues["split"] == "train"]
    situations = pd.DataFrame({"context": None, "text": train["situation"].str.strip(), "emotion": train["emotion"]})
    situations = situations[situations["text"] != ""].drop_duplicates(["text", "emotion"])
    return {**splits, "train": pd.concat([splits["train"], situations], ignore_index=True)}
