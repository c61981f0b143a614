"""The ablation study's machinery without running DVC: the queued command lines and what their overrides touch, the
reading of `dvc exp show --json`, the paired bootstrap and the tables, on fabricated per-example frames."""
import math
import random

import numpy as np
import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from pipeline.ablations import (BEGIN, END, LABELS_PATH, PER_EXAMPLE_PATH, SCORES_PATH, STATISTICS, SYSTEM, VARIANTS,
                                AblationParams, collect, experiment_scores, experiments, overrides, paired_bootstrap,
                                queue_commands, stale_stages, tables_section, touched_stages)
from pipeline.diffusion.config import ModelConfig
from pipeline.errors import PipelineError
from pipeline.labels import INTENTS
from pipeline.report import replace_section
from pipeline.io import write_frame
from pipeline.schemas import SCORES
from pipeline.scoring import SCORE_LABELS
from tests.test_dvc_deps import ROOT

STUDY = AblationParams(train_steps=1200, subset=200, resamples=500)


def dvc_yaml() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


def test_queue_commands_one_experiment_per_variant_under_one_budget_then_one_worker():
    commands = queue_commands(STUDY, dvc_yaml())
    assert [c[:5] for c in commands[:-1]] == [["dvc", "exp", "run", "--queue", "-n"]] * 6
    assert [c[5] for c in commands[:-1]] == ["full", "no_mask", "no_cm", "no_it", "no_sf", "no_controls"]
    assert commands[-1] == ["dvc", "queue", "start", "-j", "1"]
    budget = ["-S", "train.steps=1200", "-S", "sample.subset=200"]
    assert all(c[6:10] == budget for c in commands[:-1])  # full included
    assert commands[0][10:] == [] and commands[1][10:] == ["-S", "model.mask=full"]
    assert commands[2][10:] == ["-S", "model.signals=[it,sf]"] and commands[5][10:] == ["-S", "model.signals=[]"]
    assert overrides("full", AblationParams(1200, None, 10))[1] == "sample.subset=null"


def test_the_overrides_rerun_only_training_and_what_follows_it():
    keys = {o.split("=")[0] for v in VARIANTS for o in overrides(v, STUDY)}
    assert touched_stages(dvc_yaml(), keys) == {"train_diffusion", "sample", "bench", "score", "steering", "report"}
    assert touched_stages(dvc_yaml(), ["gamma"]) == {"retrieve"}
    assert touched_stages(dvc_yaml(), ["tag"]) == {"tag", "sample", "bench", "score", "steering"}  # a section: its keys
    assert touched_stages(dvc_yaml(), ["retrieve.chunk"]) == {"retrieve"}  # a key reaches its section
    bad = {"stages": {"train_taggers": {"foreach": ["cm"], "do": {"params": ["train"]}}}}
    with pytest.raises(PipelineError, match=r"would rerun \['train_taggers'\]"):
        queue_commands(STUDY, bad)
    assert stale_stages({"score": [], "sample@edit": [], "retrieve": [], "train_taggers@cm": []}) == [
        "retrieve", "train_taggers@cm"]


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_dvc_applies_each_variants_overrides_to_params_yaml_as_intended(variant, tmp_path):
    """DVC's own -S parser (hydra) on a copy of params.yaml: valid YAML, the intended model, nothing else changed."""
    from dvc.utils.hydra import apply_overrides

    path = tmp_path / "params.yaml"
    path.write_text((ROOT / "params.yaml").read_text())
    apply_overrides(str(path), overrides(variant, STUDY))
    before, after = yaml.safe_load((ROOT / "params.yaml").read_text()), yaml.safe_load(path.read_text())
    model = ModelConfig.from_dict(after["model"])
    assert model.mask == ("full" if variant == "no_mask" else "control_range")
    expected = {"no_cm": ("it", "sf"), "no_it": ("cm", "sf"), "no_sf": ("cm", "it"), "no_controls": ()}
    assert model.signals == expected.get(variant, ("cm", "it", "sf"))
    assert (after["train"]["steps"], after["sample"]["subset"]) == (1200, 200)
    for key in ("model", "train", "sample"):
        after.pop(key), before.pop(key)
    assert after == before


def test_queue_dry_run_prints_the_command_lines(tmp_path):
    from stages.ablations import app

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["ablations"] = {"train_steps": 1200, "subset": 150, "resamples": 100}  # the study's budget, not today's
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    result = CliRunner().invoke(app, ["queue", "--dry-run", "--dvc-yaml", str(ROOT / "dvc.yaml"),
                                      "--params", str(tmp_path / "params.yaml")])
    lines = result.output.strip().splitlines()
    assert result.exit_code == 0 and len(lines) == 7, result.output
    assert lines[2] == "dvc exp run --queue -n no_cm -S train.steps=1200 -S sample.subset=150 -S 'model.signals=[it,sf]'"


# --- collecting -----------------------------------------------------------------------------------------------------
def exp_entry(name: str, rev: str, scores: dict | None, state: str | None = None) -> dict:
    """One experiment as `dvc exp show --json` (DVC 3) lists it under its baseline."""
    params = {"model": {"mask": "full" if name == "no_mask" else "control_range", "signals": ["cm", "it", "sf"]},
              "train": {"steps": 1200}}
    data = {"rev": rev, "timestamp": "2026-12-02T17:21:19", "params": {"params.yaml": {"data": params}},
            "metrics": {SCORES_PATH: {"data": scores}} if scores else {}}
    return {"name": name, "executor": {"state": state} if state else None, "revs": [{"rev": rev, "name": name,
                                                                                        "data": data}]}


def shown(entries: list[dict]) -> list[dict]:
    return [{"rev": "workspace", "name": None, "experiments": None},
            {"rev": "a" * 40, "name": "main", "experiments": entries}]


def test_experiments_reads_each_named_experiment_from_exp_show():
    scores = {"n_examples": 3, SYSTEM: {"acc_cm": 90.0}}
    found = experiments(shown([exp_entry(n, f"{i:040d}", scores) for i, n in enumerate(VARIANTS)]), VARIANTS)
    assert list(found) == list(VARIANTS) and found["no_cm"]["rev"] == f"{2:040d}"
    assert found["no_mask"]["params"]["model"]["mask"] == "full" and found["full"]["scores"] == scores
    with pytest.raises(PipelineError, match="lists 0 experiments named 'no_sf'"):
        experiments(shown([exp_entry("full", "1" * 40, scores)]), ["full", "no_sf"])
    with pytest.raises(PipelineError, match="lists 2 experiments named 'full'"):
        experiments(shown([exp_entry("full", "1" * 40, scores)] * 2), ["full"])
    with pytest.raises(PipelineError, match=r"'full' has no metrics/scores.json \(state failed\)"):
        experiments(shown([exp_entry("full", "1" * 40, None, "failed")]), ["full"])


def fabricated(n: int, seed: int, cm_flip: float = 0.1, it_flip: float = 0.2) -> pd.DataFrame:
    """Rows of SYSTEM for n examples with the SCORES and SCORE_LABELS columns (as `experiment_scores` joins them): the
    tagged CM / intents disagree with the controls at the given rates."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        control = [rng.random() < 0.4 for _ in range(3)]
        tagged = [c != (rng.random() < cm_flip) for c in control]
        it_control = [rng.choice(INTENTS) for _ in range(rng.randint(1, 3))]
        it_tagged = [c if rng.random() >= it_flip else rng.choice(INTENTS) for c in it_control]
        overlap, n_tag, n_ctrl = rng.randint(0, 4), rng.randint(4, 6), rng.randint(4, 6)
        rows.append({
            "system": SYSTEM, "example_id": f"e{i:03d}", "text": "x", "n_tokens": rng.randint(5, 20),
            "bertscore_f1": rng.random(), "mi_nll": rng.uniform(3, 5), "self_bleu": rng.random() / 10,
            **{f"cm_{m}_ok": t == c for m, t, c in zip(("er", "ip", "ex"), tagged, control)},
            **{f"cm_{m}_tagged": t for m, t in zip(("er", "ip", "ex"), tagged)},
            **{f"cm_{m}_control": c for m, c in zip(("er", "ip", "ex"), control)},
            "it_correct": sum(a == b for a, b in zip(it_tagged, it_control)), "it_total": len(it_control),
            "it_tagged": it_tagged, "it_control": it_control,
            "sf_overlap": overlap, "sf_tagged": n_tag, "sf_control": n_ctrl, "p_er": 0.5, "p_ip": 0.5, "p_ex": 0.5})
    return pd.DataFrame(rows)[[*SCORES.names, *SCORE_LABELS.names[2:]]]


def test_experiment_scores_joins_per_example_and_labels_one_to_one(tmp_path):
    """The two tables stage score writes, read back as dvc.api.read would give them, join on (system, example_id)."""
    joined = fabricated(5, seed=2)
    both = pd.concat([joined, joined.assign(system="human")], ignore_index=True)

    def reader(scores: pd.DataFrame, labels: pd.DataFrame):
        write_frame(tmp_path / "per_example.parquet", scores, SCORES)
        write_frame(tmp_path / "labels.parquet", labels, SCORE_LABELS)
        files = {PER_EXAMPLE_PATH: tmp_path / "per_example.parquet", LABELS_PATH: tmp_path / "labels.parquet"}
        return lambda path: files[path].read_bytes()

    out = experiment_scores("full", reader(both, both.iloc[::-1]))  # labels in another row order
    assert list(out.columns) == [*SCORES.names, *SCORE_LABELS.names[2:]] and len(out) == 10
    pd.testing.assert_frame_equal(out, both, check_dtype=False)
    assert list(pd.read_parquet(tmp_path / "per_example.parquet").columns) == SCORES.names  # no label column there
    for scores, labels, match in [
            (both, both.iloc[1:], r"they differ in 1 \(system, example_id\) rows \(e.g. \('diffusemp', 'e000'\)\)"),
            (both, pd.concat([both, both.iloc[:1]]), "data/scores/labels.parquet repeats a"),
            (pd.concat([both, both.iloc[:1]]), both, "data/scores/per_example.parquet repeats a")]:
        with pytest.raises(PipelineError, match="of experiment 'no_cm' do not match one-to-one: " + match) as err:
            experiment_scores("no_cm", reader(scores, labels))
        assert "\n" not in str(err.value)
    old = reader(both, both)  # labels written without a column
    both[SCORE_LABELS.names[:-1]].to_parquet(tmp_path / "labels.parquet")
    with pytest.raises(PipelineError, match=r"labels.parquet of experiment 'full' lacks \['it_control'\]"):
        experiment_scores("full", old)


def test_paired_bootstrap_of_identical_shifted_and_worse_variants():
    full = fabricated(60, seed=1)
    shifted = full.assign(bertscore_f1=full["bertscore_f1"] + 0.1)
    worse = fabricated(60, seed=1, cm_flip=0.5, it_flip=0.9)  # same controls, many more wrong tags
    out = paired_bootstrap({"full": full, "same": full.sample(frac=1, random_state=0), "shifted": shifted,
                            "worse": worse}, resamples=400)
    assert set(out) == {"same", "shifted", "worse"} and set(out["same"]) == set(STATISTICS)
    assert all(d == {"delta": 0.0, "low": 0.0, "high": 0.0} for d in out["same"].values())  # row order does not matter
    bs = out["shifted"]["bertscore_f1_minilm"]  # paired: a constant shift has no noise at all
    assert bs["delta"] == pytest.approx(0.1) and bs["low"] == pytest.approx(0.1) and bs["high"] == pytest.approx(0.1)
    assert out["shifted"]["acc_cm"] == {"delta": 0.0, "low": 0.0, "high": 0.0}
    for key in ("acc_it", "f1_it"):
        d = out["worse"][key]
        assert d["low"] <= d["delta"] <= d["high"] < 0  # the interval excludes zero
    # delta is the statistic on all examples: F1-SF = 2 sum overlap / (sum tagged + sum control), pooled, not averaged
    sf = [f[["sf_overlap", "sf_tagged", "sf_control"]].sum() for f in (worse, full)]
    assert out["worse"]["f1_sf"]["delta"] == pytest.approx(
        100 * (2 * sf[0].iloc[0] / sf[0].iloc[1:].sum() - 2 * sf[1].iloc[0] / sf[1].iloc[1:].sum()))
    with pytest.raises(PipelineError, match="experiment other scored other examples than full"):
        paired_bootstrap({"full": full, "other": full.iloc[1:]}, resamples=10)


def test_statistics_reproduce_the_score_stage_summary():
    """Each STATISTICS entry on all examples equals what stage score computes for the same rows (test_scoring)."""
    from tests.test_scoring import stand_in_scorers, tables
    from pipeline.ablations import example_arrays
    from pipeline.scoring import assemble_systems, score_system

    per, summary = score_system(assemble_systems(**tables())["diffusemp"], stand_in_scorers())
    arrays = example_arrays(per)
    for key, stat in STATISTICS.items():
        assert stat(arrays) == pytest.approx(summary[key], nan_ok=True), key


def test_collect_and_tables(tmp_path):
    frames = {n: fabricated(40, seed=1, cm_flip=0.1 if n != "no_cm" else 0.4) for n in VARIANTS}
    scores = {n: {SYSTEM: {"acc_cm": 90.0 - i, "f1_cm": 88.0, "acc_it": 80.0, "f1_it": math.nan, "f1_sf": 50.0,
                           "bertscore_f1_minilm": 0.26, "miscore_smollm2": 36.5, "dist_1": 2.0, "dist_2": 30.0,
                           "self_bleu_5": 1.0, "avg_len": 13.0}} for i, n in enumerate(VARIANTS)}
    found = experiments(shown([exp_entry(n, f"{i:040d}", scores[n]) for i, n in enumerate(VARIANTS)]), VARIANTS)
    results = collect(found, frames, {n: 12.5 for n in VARIANTS}, AblationParams(1200, 40, 200))
    assert results["n_examples"] == 40 and results["variants"]["no_mask"]["mask"] == "full"
    assert results["variants"]["full"]["vs_full"] == {} and results["variants"]["no_cm"]["vs_full"]["acc_cm"]["delta"] < 0
    from pipeline.scoring import json_safe

    text = tables_section(json_safe(results), 3600)
    assert "Every variant trained 1,200 steps (the default model: 3,600)" in text
    assert "| paper: w/o IT | 92.24 | 90.21 | 47.92 | 41.77 | 52.63 |" in text
    assert "| ours: DiffusEmp (`full`) | 90.00 | 88.00 | 80.00 | n/a | 50.00 |" in text
    d = results["variants"]["no_cm"]["vs_full"]["acc_cm"]
    assert f"| ours: w/o CM (`no_cm`) | 88.00 ({d['delta']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}]) |" in text
    assert "| BERTScore | 0.5205 | 0.5147 | 0.2600 | 0.2600 (+0.0000 [+0.0000, +0.0000]) |" in text
    assert "| Dist-1 | 2.84 | 1.69 | 2.00 | 2.00 |" in text  # no interval
    assert "| paper: DiffuSeq | 0.5101 | 715.95 |" in text and "| ours: no controls (`no_controls`) | 0.2600 |" in text
    assert "| `no_sf` | 0000000 | 2026-12-02T17:21:19 | 12.5 |" in text
    readme = f"# R\n\n{BEGIN}\nold\n{END}\n"
    assert replace_section(readme, text, markers=(BEGIN, END)) == f"# R\n\n{BEGIN}\n{text}\n{END}\n"
    with pytest.raises(PipelineError, match=r"the scores of experiment 'full' lack \['it_tagged'\]"):
        collect(found, {**frames, "full": frames["full"].drop(columns="it_tagged")}, {}, STUDY)
