"""Score the baselines beside diffusemp: the same test examples, the same scorers (pipeline.scoring), and the paired
bootstrap 95% interval of each baseline's difference from diffusemp.

Every system is checked against the controls of the example's top-1 retrieved candidate, the controls diffusemp
generates from by default: transfertransfo_controls is given them too; trs and transfertransfo never see them, so
their ACC / F1 measure how far an unsteered response lands from those controls (as the `no_controls` ablation's do).
"""
from collections.abc import Mapping

import pandas as pd

from pipeline.ablations import STATISTICS, example_arrays, paired_differences
from pipeline.metrics.relevance import fluency_ppl
from pipeline.scoring import gold_rows, kept, system_frame

BASE = "diffusemp"
# scores.json key -> the statistic of a set of examples whose difference from BASE gets an interval
COMPARED = {
    "bertscore_f1_minilm": STATISTICS["bertscore_f1_minilm"],
    "fluency_ppl_smollm2": lambda a: fluency_ppl(a["fluency_nll"]),
    "acc_cm": STATISTICS["acc_cm"],
    "acc_it": STATISTICS["acc_it"],
    "f1_sf": STATISTICS["f1_sf"],
}


def assemble(dialogues: pd.DataFrame, controls: pd.DataFrame, candidates: pd.DataFrame,
             retrieved: pd.DataFrame, samples: Mapping[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """diffusemp's outputs (samples/retrieved.parquet) and each baseline's (samples: name -> schema SAMPLES), on the
    examples diffusemp answered -> system -> the frame `pipeline.scoring.score_system` reads."""
    ids = sorted(retrieved["example_id"].unique())
    gold = gold_rows(dialogues, controls, ids)
    outputs = {BASE: (retrieved, "samples/retrieved.parquet"),
               **{name: (s, f"samples/baselines/{name}.parquet") for name, s in samples.items()}}
    return {name: system_frame(gold, *kept(s, candidates, ids, what)) for name, (s, what) in outputs.items()}


def compare(table: pd.DataFrame, metrics: Mapping, resamples: int) -> dict:
    """table / metrics: `pipeline.scoring.score_systems` of `assemble`'s systems -> metrics/baselines.json:
    {"n_examples", "resamples", "systems": {name: every Table 2 metric}, "vs_diffusemp": {baseline: {metric: {"delta",
    "low", "high"}}} (COMPARED metrics)}."""
    arrays = {}
    for name, rows in table.groupby("system", sort=False):
        rows = rows.sort_values("example_id")
        arrays[name] = {**example_arrays(rows), "fluency_nll": rows["fluency_nll"].to_numpy(float)}
    return {"n_examples": metrics["n_examples"], "resamples": resamples,
            "systems": {name: metrics[name] for name in arrays},
            "vs_diffusemp": paired_differences(arrays, BASE, resamples, COMPARED)}
