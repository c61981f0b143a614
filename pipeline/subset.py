"""The examples every system is scored on, and the control rows the diffusion model generates them from.

eval_subset picks the seeded subset of a split; control_rows joins each picked example's context to its first
candidates (data/retrieval/candidates.parquet or oracle.parquet), every example with the same number of rows.
"""
from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

from pipeline.diffusion.config import SampleConfig
from pipeline.errors import PipelineError


def eval_subset(example_ids: Sequence[str], n: int | None, seed: int) -> list[str]:
    """A fixed, seeded choice of n distinct example ids (all of them when n is None or >= their number), sorted.

    Depends only on the set of ids, n and seed, so every stage that calls it picks the same examples."""
    ids = sorted(set(example_ids))
    if n is None or n >= len(ids):
        return ids
    pick = np.random.default_rng(seed).choice(len(ids), size=n, replace=False)
    return sorted(ids[i] for i in pick)


def control_rows(controls: pd.DataFrame, candidates: pd.DataFrame, cfg: SampleConfig, seed: int,
                 source: str) -> list[dict]:
    """The control-source rows generated for the scored subset: the first cfg.candidates candidates (schema
    CANDIDATES; null = all) of each example of the seeded cfg.subset of cfg.split (controls: schema CONTROLS), each
    with that example's `context`, sorted by (example_id, rank): every example has the same number of rows, so its
    candidates are `group_size(rows)` consecutive rows. source: the candidates file, named in the errors."""
    split = controls[controls["split"] == cfg.split]
    ids = eval_subset(split["example_id"], cfg.subset, seed)
    keep = candidates["example_id"].isin(set(ids)) & (candidates["rank"] < cfg.candidates_of(len(candidates)))
    cands = candidates[keep].sort_values(["example_id", "rank"], ignore_index=True)
    missing = sorted(set(ids) - set(cands["example_id"]))
    if missing:
        raise PipelineError(f"{source} has no candidates for {len(missing)} {cfg.split} examples (e.g. {missing[0]}): "
                            "rebuild it with `dvc repro retrieve`")
    counts = cands["example_id"].value_counts()
    if counts.nunique() > 1:
        raise PipelineError(f"{source} has {counts.min()} candidates for example {counts.idxmin()} but {counts.max()} "
                            f"for others: set sample.candidates / edit_candidates to at most {counts.min()}")
    context = dict(zip(split["example_id"], split["context"]))
    return [{**row, "context": context[row["example_id"]]} for row in cands.to_dict("records")]


def group_size(rows: Sequence[Mapping]) -> int:
    """Rows per example of `control_rows` output (its candidates)."""
    return len(rows) // len({r["example_id"] for r in rows})
