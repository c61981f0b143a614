"""The ablation study of the paper's section 5.2 (Tables 4 and 5) and Table 2's DiffuSeq row, as six DVC experiments.

Queue (`make ablations` = `python -m stages.ablations queue`): one `dvc exp run --queue -n <variant> -S ...` per
VARIANTS entry, every one under the study's budget (params.yaml `ablations`, `full` included), then `dvc queue start`
(one worker: the experiments run one after another). The overrides touch only the params of STUDY_STAGES, so an
experiment reruns training, sampling, bench, scoring and the report, never the taggers or retrieval.

Collect (`python -m stages.ablations collect`): each experiment's metrics/scores.json as `dvc exp show --json` reports
it, and its data/scores/per_example.parquet and data/scores/labels.parquet read through DVC at the experiment's
revision and joined on (system, example_id), give
- per variant, the Table 4 / 5 / 2 metrics of its `diffusemp` system (generated from the retrieved controls);
- per variant, the paired bootstrap 95% interval of its difference from `full`: the examples are resampled with
  replacement `resamples` times, the same draws for every variant, and each metric is recomputed on a draw from the
  per-example counts (STATISTICS) - the pooled ratios and F1s as pooled ratios and F1s, not means of per-example ratios.
Dist-n has no interval (distinct n-grams of a resample with repeated examples are not those of a sample), and
self-BLEU's is conditional on the reference set (each output's BLEU against all the other outputs, resampled as is).
"""
import io
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.bootstrap import BOOTSTRAP_SEED, bootstrap_draws
from pipeline.errors import PipelineError
from pipeline.labels import SIGNALS
from pipeline.metrics.control import (CM_COLUMNS, cm_accuracy, cm_confusion, cm_f1, cm_matches, f1, intent_confusions,
                                     macro_f1, ratio)
from pipeline.metrics.relevance import miscore
from pipeline.report import COLUMNS, PAPER_TABLE2, cell
from pipeline.schemas import SCORES
from pipeline.scoring import SCORE_LABELS

BEGIN, END = "<!-- ablations:begin -->", "<!-- ablations:end -->"
SYSTEM = "diffusemp"  # the system every table compares: generated from the retrieved candidates' controls
SCORES_PATH = "metrics/scores.json"  # as dvc exp show names the metrics file
PER_EXAMPLE_PATH = "data/scores/per_example.parquet"  # schema SCORES
LABELS_PATH = "data/scores/labels.parquet"  # schema pipeline.scoring.SCORE_LABELS
KEYS = ["system", "example_id"]
TIMINGS_PATH = "metrics/timings/train_diffusion.json"
# The stages an experiment may rerun (a foreach stage by its name); the study's overrides must touch no other's params.
STUDY_STAGES = ("train_diffusion", "sample", "bench", "score", "steering", "report")


def signals_override(signals: Iterable[str]) -> str:
    return f"model.signals=[{','.join(signals)}]"


# Variant -> its -S overrides beyond the budget: the paper's Table 4 rows, then the no-signal baseline of Table 2.
VARIANTS: dict[str, list[str]] = {
    "full": [],
    "no_mask": ["model.mask=full"],
    **{f"no_{s}": [signals_override(x for x in SIGNALS if x != s)] for s in SIGNALS},
    "no_controls": [signals_override([])],
}
LABELS = {"full": "DiffusEmp", "no_mask": "w/o Mask", "no_cm": "w/o CM", "no_it": "w/o IT", "no_sf": "w/o SF",
          "no_controls": "no controls"}

# (header, scores.json key, decimals) of Table 4, and the paper's rows.
TABLE4 = [("CM ACC", "acc_cm", 2), ("CM F1", "f1_cm", 2), ("IT ACC", "acc_it", 2), ("IT F1", "f1_it", 2),
          ("SF F1", "f1_sf", 2)]
PAPER_TABLE4 = {"full": (92.36, 90.26, 84.24, 77.15, 52.79), "no_mask": (90.76, 87.99, 73.80, 66.58, 49.43),
                "no_cm": (89.34, 85.55, 83.80, 76.38, 52.89), "no_it": (92.24, 90.21, 47.92, 41.77, 52.63),
                "no_sf": (89.70, 86.96, 83.12, 74.90, 22.48)}
# (row, scores.json key, decimals, paper DiffusEmp, paper w/o SF) of Table 5; the paper's BERTScore (x 100 there) / 100.
TABLE5 = [("BERTScore", "bertscore_f1_minilm", 4, 0.5205, 0.5147), ("MIScore", "miscore_smollm2", 2, 626.92, 993.44),
          ("Dist-1", "dist_1", 2, 2.84, 1.69), ("Dist-2", "dist_2", 2, 29.26, 22.83),
          ("self-BLEU", "self_bleu_5", 2, 1.09, 1.31), ("AvgLen", "avg_len", 2, 14.13, 13.23)]


@dataclass(frozen=True)
class AblationParams:
    """params.yaml `ablations`: train_steps: `train.steps` of every variant; subset: `sample.subset` (test examples
    scored; null = all); resamples: bootstrap resamples of the intervals."""

    train_steps: int
    subset: int | None
    resamples: int


def overrides(variant: str, study: AblationParams) -> list[str]:
    """The -S overrides of one variant: the study's budget, then the variant's own."""
    subset = "null" if study.subset is None else study.subset
    return [f"train.steps={study.train_steps}", f"sample.subset={subset}", *VARIANTS[variant]]


def touched_stages(dvc_yaml: Mapping, keys: Iterable[str]) -> set[str]:
    """Stages of a parsed dvc.yaml (a foreach stage by its name) whose `params` hold one of the dotted params.yaml
    `keys`, a section above it or a key within it."""
    keys, out = list(keys), set()
    for name, stage in dvc_yaml["stages"].items():
        entries = stage.get("do", stage).get("params", [])
        params = [p for e in entries for p in ([e] if isinstance(e, str) else [k for ks in e.values() for k in ks])]
        if any(k == p or k.startswith(p + ".") or p.startswith(k + ".") for k in keys for p in params):
            out.add(name)
    return out


def queue_commands(study: AblationParams, dvc_yaml: Mapping) -> list[list[str]]:
    """The dvc command lines of the study: one `dvc exp run --queue` per variant, then `dvc queue start -j 1`."""
    keys = {o.split("=")[0] for v in VARIANTS for o in overrides(v, study)}
    outside = sorted(touched_stages(dvc_yaml, keys) - set(STUDY_STAGES))
    if outside:
        raise PipelineError(f"the study's overrides {sorted(keys)} would rerun {outside}: only {list(STUDY_STAGES)} may")
    runs = [["dvc", "exp", "run", "--queue", "-n", v, *[a for o in overrides(v, study) for a in ("-S", o)]]
            for v in VARIANTS]
    return [*runs, ["dvc", "queue", "start", "-j", "1"]]


def stale_stages(status: Mapping) -> list[str]:
    """`dvc status --json` -> its changed stages outside STUDY_STAGES (an experiment would rerun them too)."""
    return sorted(s for s in status if s.split("@")[0] not in STUDY_STAGES)


def experiments(shown: list, names: Iterable[str]) -> dict[str, dict]:
    """`dvc exp show --json` -> {name: {"rev", "timestamp", "params" (params.yaml), "scores" (metrics/scores.json)}}
    for each of `names`, which must each name one finished experiment."""
    found: dict[str, list] = {}
    for baseline in shown:
        for exp in baseline.get("experiments") or []:
            found.setdefault(exp.get("name"), []).append(exp)
    out = {}
    for name in names:
        runs = found.get(name, [])
        if len(runs) != 1:
            raise PipelineError(f"dvc exp show lists {len(runs)} experiments named {name!r}, not 1: run `make "
                                "ablations` (after `dvc exp remove` of an older one), or pass `--rev` the commit "
                                "they ran from")
        data = runs[0]["revs"][0].get("data") or {}
        scores = (data.get("metrics") or {}).get(SCORES_PATH, {}).get("data")
        if not scores or SYSTEM not in scores:
            state = (runs[0].get("executor") or {}).get("state", "unknown")
            raise PipelineError(f"experiment {name!r} has no {SCORES_PATH} (state {state}): see `dvc queue logs {name}`")
        out[name] = {"rev": data["rev"], "timestamp": data.get("timestamp"),
                     "params": data["params"]["params.yaml"]["data"], "scores": scores}
    return out


def example_arrays(per: pd.DataFrame) -> dict[str, np.ndarray]:
    """Rows of one system (N examples) with the SCORES and SCORE_LABELS columns -> the per-example counts STATISTICS
    read, each [N, ...]."""
    tagged, control = (per[[f"{c}_{side}" for c in CM_COLUMNS]].to_numpy(bool) for side in ("tagged", "control"))
    return {"cm_ok": cm_matches(tagged, control), "cm_confusion": cm_confusion(tagged, control),
            "it": per[["it_correct", "it_total"]].to_numpy(int),
            "it_confusion": intent_confusions(per["it_tagged"], per["it_control"]),
            "sf": per[["sf_overlap", "sf_tagged", "sf_control"]].to_numpy(int),
            **{c: per[c].to_numpy(float) for c in ("bertscore_f1", "mi_nll", "self_bleu", "n_tokens")}}


# scores.json key -> the metric of a set of examples from their `example_arrays` (as stage score computes it).
STATISTICS: dict[str, Callable[[Mapping[str, np.ndarray]], float]] = {
    "acc_cm": lambda a: cm_accuracy(a["cm_ok"])["mean"],
    "f1_cm": lambda a: cm_f1(a["cm_confusion"].sum(0))["mean"],
    "acc_it": lambda a: ratio(*a["it"].sum(0)),
    "f1_it": lambda a: macro_f1(a["it_confusion"].sum(0)),
    "f1_sf": lambda a: f1(*a["sf"].sum(0)),
    "bertscore_f1_minilm": lambda a: float(a["bertscore_f1"].mean()),
    "miscore_smollm2": lambda a: miscore(a["mi_nll"]),
    "self_bleu_5": lambda a: 100.0 * float(a["self_bleu"].mean()),
    "avg_len": lambda a: float(a["n_tokens"].mean()),
}


def resampled(arrays: Mapping[str, np.ndarray], draws: np.ndarray,
              statistics: Mapping[str, Callable[[Mapping[str, np.ndarray]], float]] = STATISTICS) -> np.ndarray:
    """draws: int [B, N] example indices -> float [B, len(statistics)]: every statistic on every resample."""
    out = np.empty((len(draws), len(statistics)))
    for b, idx in enumerate(draws):
        picked = {k: v[idx] for k, v in arrays.items()}
        out[b] = [stat(picked) for stat in statistics.values()]
    return out


def paired_differences(arrays: Mapping[str, Mapping[str, np.ndarray]], base: str, resamples: int,
                       statistics: Mapping[str, Callable[[Mapping[str, np.ndarray]], float]] = STATISTICS,
                       seed: int = BOOTSTRAP_SEED) -> dict[str, dict[str, dict[str, float]]]:
    """arrays: system -> its `example_arrays` (and any extra arrays `statistics` read), every system on the same
    examples in the same order -> {system but base: {metric: {"delta": its value - base's on all examples, "low",
    "high": the 2.5th and 97.5th percentiles of that difference over `resamples` draws of the examples with
    replacement, the same draws for every system}}}."""
    n = len(next(iter(arrays[base].values())))
    draws, everything = bootstrap_draws(n, resamples, seed), np.arange(n)[None]
    base_draws, base_point = resampled(arrays[base], draws, statistics), resampled(arrays[base], everything, statistics)
    out = {}
    for name, a in arrays.items():
        if name == base:
            continue
        diff = resampled(a, draws, statistics) - base_draws
        point = resampled(a, everything, statistics) - base_point
        low, high = np.percentile(diff, [2.5, 97.5], axis=0)
        out[name] = {k: {"delta": float(point[0, j]), "low": float(low[j]), "high": float(high[j])}
                     for j, k in enumerate(statistics)}
    return out


def paired_bootstrap(frames: Mapping[str, pd.DataFrame], resamples: int,
                     seed: int = BOOTSTRAP_SEED) -> dict[str, dict[str, dict[str, float]]]:
    """frames: variant -> rows of its SYSTEM (`check_scores`), `full` among them, all on the same examples ->
    `paired_differences` of every variant from `full` on STATISTICS."""
    ids = {name: sorted(f["example_id"]) for name, f in frames.items()}
    other = [n for n in frames if ids[n] != ids["full"]]
    if other:
        raise PipelineError(f"experiment {other[0]} scored other examples than full: a paired comparison needs the "
                            "same `sample.subset` in every variant")
    arrays = {n: example_arrays(f.sort_values("example_id")) for n, f in frames.items()}
    return paired_differences(arrays, "full", resamples, seed=seed)


def missing_columns(frame: pd.DataFrame, names: Iterable[str]) -> list[str]:
    return [c for c in names if c not in frame.columns]


def join_labels(scores: pd.DataFrame, labels: pd.DataFrame, name: str) -> pd.DataFrame:
    """An experiment's per-example table (SCORES) and its labels table (SCORE_LABELS), joined one-to-one on
    (system, example_id) -> one frame with the columns of both."""
    for path, frame, schema in ((PER_EXAMPLE_PATH, scores, SCORES), (LABELS_PATH, labels, SCORE_LABELS)):
        missing = missing_columns(frame, schema.names)
        if missing:
            raise PipelineError(f"{path} of experiment {name!r} lacks {missing}: rerun it with this code")
    keys = [set(map(tuple, f[KEYS].itertuples(index=False))) for f in (scores, labels)]
    duplicated = [p for p, f, k in ((PER_EXAMPLE_PATH, scores, keys[0]), (LABELS_PATH, labels, keys[1]))
                  if len(k) != len(f)]
    if duplicated or keys[0] != keys[1]:
        why = (f"{duplicated[0]} repeats a (system, example_id)" if duplicated else
               f"they differ in {len(keys[0] ^ keys[1])} (system, example_id) rows (e.g. {min(keys[0] ^ keys[1])})")
        raise PipelineError(f"{PER_EXAMPLE_PATH} and {LABELS_PATH} of experiment {name!r} do not match one-to-one: "
                            f"{why}; rerun its stage score")
    return scores[SCORES.names].merge(labels[SCORE_LABELS.names], on=KEYS, how="inner", validate="one_to_one")


def experiment_scores(name: str, read: Callable[[str], bytes]) -> pd.DataFrame:
    """read: repository path -> the file's bytes at the experiment's revision (stage ablations: `dvc.api.read`) ->
    its per-example scores joined with its labels (`join_labels`)."""
    return join_labels(*(pd.read_parquet(io.BytesIO(read(p))) for p in (PER_EXAMPLE_PATH, LABELS_PATH)), name)


def check_scores(per: pd.DataFrame, name: str) -> pd.DataFrame:
    """The SYSTEM rows of an experiment's joined table (`experiment_scores`), after checking it has the SCORES and
    SCORE_LABELS columns."""
    missing = missing_columns(per, [*SCORES.names, *SCORE_LABELS.names])
    if missing:
        raise PipelineError(f"the scores of experiment {name!r} lack {missing}: rerun it with this code")
    return per[per["system"] == SYSTEM]


def collect(found: Mapping[str, dict], frames: Mapping[str, pd.DataFrame], train_minutes: Mapping[str, float],
            study: AblationParams) -> dict:
    """found: `experiments`; frames: variant -> its per-example table joined with its labels (`experiment_scores`);
    train_minutes: variant -> training time ->
    metrics/ablations.json: the budget, then per variant its revision, settings, metrics (every scores.json entry of
    SYSTEM) and, but for full, the bootstrap intervals of its differences (`paired_bootstrap`)."""
    per = {name: check_scores(frames[name], name) for name in VARIANTS}
    intervals = paired_bootstrap(per, study.resamples)
    variants = {}
    for name in VARIANTS:
        params = found[name]["params"]
        variants[name] = {"rev": found[name]["rev"], "finished": found[name]["timestamp"],
                          "train_steps": params["train"]["steps"], "mask": params["model"]["mask"],
                          "signals": params["model"]["signals"], "train_minutes": train_minutes[name],
                          "metrics": found[name]["scores"][SYSTEM], "vs_full": intervals.get(name, {})}
    return {"system": SYSTEM, "n_examples": len(per["full"]), "train_steps": study.train_steps,
            "resamples": study.resamples, "bootstrap_seed": BOOTSTRAP_SEED, "variants": variants}


def table(head: list[str], rows: list[list[str]]) -> str:
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
                     + ["| " + " | ".join(r) + " |" for r in rows])


def with_interval(variant: dict, key: str, decimals: int) -> str:
    """The variant's value, then its difference from full and that difference's 95% interval (none for full)."""
    value, d = cell(variant["metrics"].get(key), decimals), variant["vs_full"].get(key)
    if d is None:
        return value
    if any(d[k] is None or math.isnan(d[k]) for k in ("delta", "low", "high")):
        return f"{value} (n/a)"
    return f"{value} ({d['delta']:+.{decimals}f} [{d['low']:+.{decimals}f}, {d['high']:+.{decimals}f}])"


def tables_section(results: dict, default_steps: int) -> str:
    """The generated block between the README / docs markers: Tables 4, 5 and 2's no-control row, and the timings."""
    v = results["variants"]
    caption = (f"Every variant trained {results['train_steps']:,} steps (the default model: {default_steps:,}), same "
               f"seed; the `{SYSTEM}` system on {results['n_examples']} test examples. In brackets: the variant's "
               f"difference from `full` and its paired bootstrap 95% interval ({results['resamples']:,} resamples of "
               "the examples; docs/metrics.md).")
    t4 = table(["", *[h for h, _, _ in TABLE4]],
               [[f"paper: {LABELS[n]}", *[cell(x, 2) for x in row]] for n, row in PAPER_TABLE4.items()]
               + [[f"ours: {LABELS[n]} (`{n}`)", *[with_interval(v[n], k, d) for _, k, d in TABLE4]] for n in v])
    t5 = table(["", "paper: DiffusEmp", "paper: w/o SF", "ours: full", "ours: no_sf (difference [95%])"],
               [[h, cell(p_full, d), cell(p_no, d), cell(v["full"]["metrics"].get(k), d),
                 with_interval(v["no_sf"], k, d)] for h, k, d, p_full, p_no in TABLE5])
    t2 = table(["", *[h for h, _, _ in COLUMNS]],
               [[f"paper: {n}", *[cell(x, d) for x, (_, _, d) in zip(PAPER_TABLE2[n], COLUMNS)]]
                for n in ("DiffuSeq", "DiffusEmp")]
               + [[f"ours: {LABELS[n]} (`{n}`)", *[cell(v[n]["metrics"].get(k), d) for _, k, d in COLUMNS]]
                  for n in ("no_controls", "full")])
    times = table(["variant", "revision", "finished", "training minutes"],
                  [[f"`{n}`", x["rev"][:7], str(x["finished"]), cell(x["train_minutes"], 1)] for n, x in v.items()])
    return "\n\n".join([
        "Generated by `python -m stages.ablations collect` from the experiments of `make ablations`: do not edit by "
        "hand.", f"**Table 4** (ablations). {caption}", t4,
        "**Table 5** (what SF adds). BERTScore: ours MiniLM, the paper's DeBERTa (x 100 in its Table 5, / 100 here); "
        "MIScore: another model and scale (README Results). Dist-n: no interval (a resample repeats examples).", t5,
        "**Table 2, the DiffuSeq row**: `no_controls`, the same model with no control signal, scored like every "
        "system (its ACC/F1 compare its output with the retrieved controls it never saw).", t2,
        "Experiments (the queue runs one at a time: the time between two finishes is one experiment's, training "
        "included).", times])
