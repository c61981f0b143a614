"""Scoring assembly and summary on tiny synthetic tables with stand-in scorers; the report and the plots."""
import math

import numpy as np
import pandas as pd
import pytest

from pipeline.errors import PipelineError
from pipeline.io import write_frame
from pipeline.plots import render_cm, render_curves
from pipeline.report import (BEGIN, END, EXAMPLES, RERANK_JUDGES, examples_section, model_note, numeric_leaves,
                             replace_section, results_section, results_table)
from pipeline.schemas import SCORES
from pipeline.scoring import (SCORE_LABELS, SYSTEMS, Scorers, assemble_systems, cm_points, json_safe,
                              reranked_sources, score_system, score_systems)

IDS = ["c1:1", "c2:1"]


def controls_row(text: str, cm=(False, False, False), intents=("neutral",), sf=None) -> dict:
    """The CONTROL_FIELDS of `text` as the stand-in taggers below would tag it (words split on spaces)."""
    words = text.split()
    return {"words": words, "word_sent": [0] * len(words), "sf": sf or [w.upper() for w in words],
            "sent_starts": [0], "sent_ends": [len(text)], "intents": list(intents),
            "cm_er": cm[0], "cm_ip": cm[1], "cm_ex": cm[2], "subword_ids": [1] * len(words),
            "subword_word": list(range(len(words)))}


def tables() -> dict[str, pd.DataFrame]:
    gold = ["i am so sorry", "That is So great"]
    cands = ["oh no that is bad", "wow great"]
    dialogues = pd.DataFrame({"example_id": IDS, "split": "test", "conv_id": ["c1", "c2"], "turn": 1,
                              "emotion": "sad", "situation": "", "context": [["my dog died"], ["i got the job"]],
                              "response": gold})
    controls = pd.DataFrame([{"example_id": i, **controls_row(t, cm=(True, False, False))} for i, t in zip(IDS, gold)])
    candidates = pd.DataFrame([{"example_id": i, "rank": r, "cand_response": t if r == 0 else "other words",
                                **controls_row(t if r == 0 else "other words", cm=(r == 0, False, False))}
                               for i, t in zip(IDS[::-1], cands[::-1]) for r in (1, 0)])  # out of order on purpose
    oracle = pd.DataFrame([{"example_id": i, "rank": 0, "cand_response": t, **controls_row(t, cm=(True, False, False))}
                           for i, t in zip(IDS, gold)])
    samples = {m: pd.DataFrame({"example_id": IDS, "rank": ranks, "text": texts})
               for m, ranks, texts in (("retrieved", 0, ["oh no that is", ""]), ("oracle", 0, gold),
                                       ("edit", [0, 1], ["oh no that is sad", "wow"]))}  # edit kept c2's 2nd candidate
    reranked = pd.DataFrame({"example_id": IDS, "rank": [1, 0], "text": ["other words", "wow great"]})
    return dict(dialogues=dialogues, controls=controls, candidates=candidates, oracle=oracle,
                retrieved_samples=samples["retrieved"], oracle_samples=samples["oracle"],
                edit_samples=samples["edit"], reranked=reranked)


def stand_in_tag(contexts, responses, segments) -> pd.DataFrame:
    """Tags like `controls_row`: ER present iff the response has a word, one `neutral` intent per non-empty text."""
    n = [len(s["words"]) > 0 for s in segments]
    return pd.DataFrame({"cm_er": n, "cm_ip": False, "cm_ex": False, "p_er": [0.9 * x for x in n], "p_ip": 0.2,
                         "p_ex": 0.1, "intents": [["neutral"] if x else [] for x in n]})


def stand_in_scorers() -> Scorers:
    return Scorers(
        segment=lambda texts: [{"words": t.split()} for t in texts],
        tag=stand_in_tag,
        frames=lambda segments, texts: [[w.upper() for w in s["words"]] for s in segments],
        bertscore=lambda cands, refs: np.array([float(c == r) for c, r in zip(cands, refs)]),
        mi_nll=lambda contexts, responses: np.full(len(responses), math.log(50.0)),
        fluency_nll=lambda texts: np.array([math.log(len(t)) if t.strip() else math.nan for t in texts]),
    )


def test_assemble_systems_aligns_every_system_on_the_sampled_examples():
    systems = assemble_systems(**tables())
    assert list(systems) == list(SYSTEMS)
    for df in systems.values():
        assert list(df["example_id"]) == IDS and list(df["reference"]) == ["i am so sorry", "That is So great"]
    assert list(systems["retrieval"]["text"]) == ["oh no that is bad", "wow great"]  # rank 0 of each, in id order
    assert list(systems["diffusemp"]["words"][0]) == "oh no that is bad".split()  # checked against the candidate
    assert list(systems["diffusemp_oracle"]["words"][1]) == "That is So great".split()
    assert list(systems["diffusemp_edit"]["text"]) == ["oh no that is sad", "wow"]
    edit = systems["diffusemp_edit"]  # each text against the controls of the candidate it came from
    assert list(edit["words"][0]) == "oh no that is bad".split() and list(edit["words"][1]) == ["other", "words"]
    assert list(edit["cm_er"]) == [True, False]
    assert list(systems["retrieval_reranked"]["words"][0]) == ["other", "words"]  # c1 kept its 2nd candidate


def test_reranked_sources_keep_one_candidate_response_per_example():
    from pipeline.rerank import Judges

    rows = [{"example_id": e, "rank": r, "cand_response": t, "context": ["hi"]}
            for e, texts in (("a", ["a long one", "short"]), ("b", ["tiny", "a longer one"])) for r, t in enumerate(texts)]
    judges = Judges(fluency_nll=lambda texts: np.array([float(len(t)) for t in texts]))  # the shortest is "fluent"
    kept = reranked_sources(rows, "fluency", judges)
    assert kept.to_dict("list") == {"example_id": ["a", "b"], "rank": [1, 0], "text": ["short", "tiny"]}
    assert reranked_sources(rows, "none", judges)["rank"].tolist() == [0, 0]  # no rule: the top-1 candidate


def test_assemble_systems_rejects_missing_rows_and_empty_contexts():
    t = tables()
    t["oracle_samples"] = t["oracle_samples"].iloc[:1]
    with pytest.raises(PipelineError, match="samples/oracle.parquet lacks a single sample for 1 scored"):
        assemble_systems(**t)
    t = tables()
    t["edit_samples"] = pd.concat([t["edit_samples"], t["edit_samples"].iloc[:1]])  # two texts for one example
    with pytest.raises(PipelineError, match="samples/edit.parquet lacks a single sample"):
        assemble_systems(**t)
    t = tables()
    t["edit_samples"].loc[1, "rank"] = 7
    with pytest.raises(PipelineError, match=r"candidate \('c2:1', 7\)"):
        assemble_systems(**t)
    t = tables()
    t["dialogues"].at[0, "context"] = []
    with pytest.raises(PipelineError, match="empty context"):
        assemble_systems(**t)


def test_score_system_by_hand():
    systems = assemble_systems(**tables())
    per, human = score_system(systems["human"], stand_in_scorers())
    assert (human["acc_cm"], human["acc_it"], human["f1_sf"]) == (100.0, 100.0, 100.0)  # re-tagging round trip
    assert human["bertscore_f1_minilm"] == 1.0 and human["miscore_smollm2"] == pytest.approx(50.0)
    assert human["avg_len"] == 4.0 and human["dist_1"] == pytest.approx(100 * 7 / 8)  # "so" twice, once capitalised
    assert human["p_er"] == pytest.approx(0.9)
    # fluency: exp(mean NLL) with NLL = log(len(text)): the geometric mean of "i am so sorry" and "That is So great"
    assert human["fluency_ppl_smollm2"] == pytest.approx((13 * 16) ** 0.5) and human["empty_outputs"] == 0

    per, gen = score_system(systems["diffusemp"], stand_in_scorers())
    # Outputs "oh no that is" and "" against controls "oh no that is bad" (ER) and "wow great" (ER).
    assert gen["acc_cm_er"] == 50.0 and gen["acc_cm_ip"] == 100.0 and gen["acc_cm"] == pytest.approx(250 / 3)
    assert gen["acc_it"] == 50.0  # the empty output misses its one sentence
    # F1-CM: ER tagged (present, absent) against (present, present): present F1 2/3, absent F1 0 (one false
    # "absent"); IP and EX absent everywhere: F1 100. F1-IT: neutral TP 1, FN 1 (the missing sentence): 2/3.
    assert gen["f1_cm_er"] == pytest.approx(100 / 3) and gen["f1_cm_ip"] == gen["f1_cm_ex"] == 100.0
    assert gen["f1_cm"] == pytest.approx((100 / 3 + 200) / 3) and gen["f1_it"] == pytest.approx(200 / 3)
    assert (human["f1_cm"], human["f1_it"]) == (100.0, 100.0)
    assert list(per["it_tagged"]) == [["neutral"], []] and list(per["it_control"]) == [["neutral"], ["neutral"]]
    assert list(per["cm_er_tagged"]) == [True, False] and list(per["cm_er_control"]) == [True, True]
    assert gen["f1_sf"] == pytest.approx(100 * 2 * 4 / (4 + 7))  # 4 of 4 tagged labels, 4 of 5 + 2 control labels
    assert list(per["n_tokens"]) == [4, 0] and list(per["it_total"]) == [1, 1]
    assert gen["self_bleu_5"] == 0.0  # nothing shared with the empty output
    assert gen["avg_len"] == 2.0
    assert gen["fluency_ppl_smollm2"] == pytest.approx(13.0) and gen["empty_outputs"] == 1  # the empty one left out
    # BLEU-4 of "oh no that is" against its source "oh no that is bad": p_1..4 = 1, BP = exp(1 - 5/4); the empty
    # output scores 0
    assert gen["bleu4_to_source"] == pytest.approx(100 * math.exp(1 - 5 / 4) / 2)


def test_score_systems_writes_one_entry_per_system_and_json_has_no_nan(tmp_path):
    systems = assemble_systems(**tables())
    table, metrics = score_systems(systems, stand_in_scorers())
    assert metrics["n_examples"] == 2 and set(SYSTEMS) <= set(metrics)
    assert list(table["system"].unique()) == list(SYSTEMS) and len(table) == 12
    # Stage score writes the SCORES columns to per_example.parquet and the labels beside them to labels.parquet, one
    # row per (system, example) in each, in the same order.
    write_frame(tmp_path / "per_example.parquet", table, SCORES)
    write_frame(tmp_path / "labels.parquet", table, SCORE_LABELS)
    per, labels = pd.read_parquet(tmp_path / "per_example.parquet"), pd.read_parquet(tmp_path / "labels.parquet")
    assert list(per.columns) == SCORES.names and list(labels.columns) == SCORE_LABELS.names
    assert not set(SCORES.names) & set(SCORE_LABELS.names[2:])  # the labels are not in per_example.parquet
    assert per[["system", "example_id"]].equals(labels[["system", "example_id"]]) and len(labels) == 12
    assert json_safe({"a": {"x": math.nan, "y": 1.23456}})["a"] == {"x": None, "y": 1.2346}
    points = cm_points(metrics)
    assert list(points.columns) == ["system", "er", "ip", "ex"] and list(points["system"]) == list(SYSTEMS)


def test_report_section_and_markers(tmp_path):
    scores = {"n_examples": 2, "diffusemp": {"bertscore_f1_minilm": 0.5, "acc_cm": None}, "human": {"avg_len": 13.0}}
    table = results_table(scores)
    assert "| paper: DiffusEmp | 0.5205 | 626.92 | n/a | 92.36 |" in table
    assert "| ours: DiffusEmp | 0.5000 | n/a | n/a |" in table and "| ours: Human |" in table
    section = results_section(scores, {"retrieval.json": {"mrr": 0.25, "per_class": [1, 2], "k": {"at_5": 3}}}, 6,
                              "relevance", 1, 3)
    assert "| retrieval.json | mrr | 0.25 |" in section and "k.at_5" in section
    assert ("keep one of 6 draws of the top-1 candidate (edit: of each of the top 3 retrieved candidates (18 in all)) "
            "per example by rerank rule `relevance`, which reads SmolLM2") in section
    assert "Retrieval, reranked: the candidate that the same rule keeps among the top 3" in section
    assert "of each of the top 2 retrieved candidates (6 in all) (edit" in results_section(scores, {}, 3, "mbr", 2, 2)
    assert "one draw per example (of the top-1 candidate), not reranked" in results_section(scores, {}, 6, "none", 1, 3)
    from pipeline.diffusion.config import RERANKS
    assert set(RERANK_JUDGES) == set(RERANKS)  # every rule says what it reads
    line = "- The DiffusEmp rows come from the masked"
    assert line in results_section(scores, {}, 6, "none", 1, 3, line) and line not in section


def test_model_note_names_the_family_and_the_papers_setting():
    from pipeline.diffusion.config import ModelConfig
    masked = ModelConfig(family="masked", init="minilm", width=384, heads=12, ffn=1536, layers=3)
    assert model_note(masked, 3600, 64, 32) == (
        "- The DiffusEmp rows come from the masked (absorbing-state discrete) diffusion family over WordPieces, not the "
        "paper's continuous one (docs/diffusion.md says why); the denoiser is the first 3 layers of the pretrained "
        "MiniLM-L6 encoder, its WordPiece embeddings tied to the output head, trained 3,600 steps of batch 64 and "
        "sampled in 32 unmasking steps. The paper (appendix A.4): continuous Gaussian diffusion over 128-d randomly "
        "initialised word embeddings, a 12-layer width-768 transformer trained from scratch, batch 128, 80k steps, "
        "2,000 sampling steps.")
    paper = model_note(ModelConfig(), 80000, 128, None)
    assert ("from the paper's continuous (Gaussian) diffusion family over 128-d randomly initialised embeddings; the "
            "denoiser is a 12-layer width-768 transformer from scratch, trained 80,000 steps of batch 128 and sampled "
            "in 2000 reverse steps.") in paper
    readme = f"# Title\n\n{BEGIN}\nold table\n{END}\n\nMore text.\n"
    out = replace_section(readme, "NEW")
    assert out == f"# Title\n\n{BEGIN}\nNEW\n{END}\n\nMore text.\n"
    assert replace_section(out, "NEW") == out  # idempotent
    with pytest.raises(PipelineError, match="must hold one"):
        replace_section("# no markers\n", "NEW")
    two = replace_section(f"{out}{EXAMPLES[0]}\nold\n{EXAMPLES[1]}\n", "EX", markers=EXAMPLES)
    assert two.endswith(f"{EXAMPLES[0]}\nEX\n{EXAMPLES[1]}\n") and f"{BEGIN}\nNEW\n{END}" in two


def test_examples_are_picked_by_seed_and_show_every_system():
    ids = [f"e{i}" for i in range(8)]
    outputs = pd.DataFrame([{"system": s, "example_id": e, "text": f"{s} says {e}" if s != "diffusemp" else ""}
                            for s in SYSTEMS for e in ids])
    contexts = {e: ["first turn", "second turn", f"last turn of {e}"] for e in ids}
    text = examples_section(outputs, contexts, seed=3, n=2)
    assert text == examples_section(outputs.sample(frac=1, random_state=0), contexts, seed=3, n=2)  # order-free
    assert text != examples_section(outputs, contexts, seed=4, n=2)
    shown = [e for e in ids if f"**{e}**" in text]
    assert len(shown) == 2 and f"second turn / last turn of {shown[0]}" in text
    assert f"- gold: human says {shown[0]}" in text and "- DiffusEmp: (empty)" in text
    assert numeric_leaves({"a": True, "b": {"c": 2}}) == [("b.c", 2)]


def test_plots_render_pngs(tmp_path):
    render_cm(pd.DataFrame({"system": ["human", "diffusemp"], "er": [0.3, 0.4], "ip": [0.2, 0.1], "ex": [0.5, 0.4]}),
              tmp_path / "cm.png")
    render_curves(pd.DataFrame({"step": [0, 10, 20], "loss": [3.0, 2.0, 1.5]}), tmp_path / "loss.png")
    for name in ("cm.png", "loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(PipelineError, match="no `step` column"):
        render_curves(pd.DataFrame({"epoch": [0], "loss": [1.0]}), tmp_path / "x.png")


def test_component_table_writes_counts_as_integers_and_rates_with_four_digits():
    from pipeline.report import component_table

    table = component_table({"frames.json": {"docs": 51263, "share": 0.768712, "top": {"Degree": 8041}}})
    assert "| frames.json | docs | 51,263 |" in table
    assert "| frames.json | share | 0.7687 |" in table
    assert "| frames.json | top.Degree | 8,041 |" in table
