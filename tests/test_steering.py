"""The steering benchmark's figures on hand-made outputs and stand-in judges (pipeline/steering.py)."""
import numpy as np
import pytest

from pipeline.errors import PipelineError
from pipeline.steering import BASE, Judges, followed, request_rows, requests, steering_report
from tests.test_retrieval import controls_row

# Each text names what a stand-in tagger finds in it: "ex" -> exploration present; the first word's intent.
TAGS = {"questioning ex": ([0, 0, 1], ["questioning"]), "sympathizing er": ([1, 0, 0], ["sympathizing"]),
        "neutral": ([0, 0, 0], ["neutral"]), "": ([0, 0, 0], [])}


def judges() -> Judges:
    return Judges(cm=lambda contexts, texts: np.array([TAGS[t][0] for t in texts], dtype=bool).reshape(-1, 3),
                  intents=lambda texts: [TAGS[t][1] for t in texts],
                  fluency_nll=lambda texts: np.full(len(texts), np.log(4.0)),
                  bertscore=lambda texts, refs: np.array([float(t == r) for t, r in zip(texts, refs)]))


def test_report_by_hand():
    outputs = {BASE: ["neutral", "neutral", "questioning ex", "neutral"],
               "cm_ex": ["questioning ex", "questioning ex", "questioning ex", "neutral"],
               "it_sympathizing": ["sympathizing er", "neutral", "", "sympathizing er"]}
    refs = ["questioning ex", "x", "x", "x"]
    report = steering_report(outputs, [["hi"]] * 4, refs, judges(), resamples=2000, seed=0)
    ex, sym = report["requests"]["cm_ex"], report["requests"]["it_sympathizing"]
    assert report["examples"] == 4 and report["base"] == {"fluency_ppl": 4.0, "bertscore": 0.0}
    assert report["human"] == {"fluency_ppl": 4.0}
    assert (ex["adherence"], ex["base_rate"], ex["exact"], ex["bertscore"]) == (75.0, 25.0, 75.0, 0.25)
    assert ex["low"] <= 50.0 <= ex["high"] and ex["fluency_ppl"] == 4.0  # the difference is +50 on these four
    assert (sym["adherence"], sym["base_rate"]) == (50.0, 0.0) and "exact" not in sym
    # per example the difference is 1, 0, 0, 1: resamples of four give 0, 25, ..., 100; the 95% interval is [0, 100]
    assert (sym["low"], sym["high"]) == (0.0, 100.0) and ex["low"] < ex["high"]


def test_followed_reads_the_requested_level():
    cm = np.array([[1, 0, 0], [0, 0, 1]], dtype=bool)
    assert followed("cm_er", cm, [[], []]).tolist() == [True, False]
    assert followed("it_questioning", cm, [["questioning", "neutral"], ["neutral", "questioning"]]).tolist() == \
        [True, False]  # the first sentence only


def test_requests_give_one_level_alone_and_keep_the_length():
    asked = requests(["questioning"])
    assert list(asked) == ["cm_er", "cm_ip", "cm_ex", "it_questioning"]
    row = {**controls_row("a:1", intents=["neutral", "wishing"], word_sent=[0, 1], words=["a", "b"], sf=["_", "_"],
                          subword_ids=[1, 2], subword_word=[0, 1], cm_er=True), "context": ["hi"]}
    cm = request_rows([row], asked["cm_ip"])[0]
    assert cm["given"] == ["cm"] and (cm["cm_er"], cm["cm_ip"], cm["cm_ex"]) == (False, True, False)
    it = request_rows([row], asked["it_questioning"])[0]
    assert it["given"] == ["it"] and it["intents"] == ["questioning"] and it["subword_word"] == [0, 1]
    from pipeline.respond import Overrides
    assert request_rows([row], Overrides())[0]["given"] == []
    with pytest.raises(PipelineError, match="steering.intents"):
        requests(["asking"])


def test_the_readme_table_and_the_plot_of_a_report(tmp_path):
    from pipeline.plots import render_steering
    from pipeline.report import steering_section

    report = steering_report({BASE: ["neutral", "questioning ex"], "cm_ex": ["questioning ex"] * 2,
                              "it_questioning": ["questioning ex", "neutral"]}, [["hi"]] * 2, ["a", "b"], judges(),
                             resamples=100, seed=0)
    table = steering_section({**report, "guidance": 2.0}).splitlines()
    assert "guidance w = 2.0" in table[0] and len(table) == 4 + 2 + 2  # note, blank, header, rule, 2 requests, base, human
    assert table[-1] == "| human responses | | | | | 4.0 | |"
    assert table[4].startswith("| CM EX | 100.0 | 50.0 | +50.0 [") and "| 100.0 |" in table[4]
    assert table[5].startswith("| intent questioning (first sentence) | 50.0 | 50.0 | +0.0 [") and "| - |" in table[5]
    render_steering(report, tmp_path / "steering.png")
    assert (tmp_path / "steering.png").read_bytes()[:4] == b"\x89PNG"
