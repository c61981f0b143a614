"""The README's results section, generated from metrics/*.json (never typed by hand).

Our Table 2 rows (metrics/scores.json) sit under the paper's, followed by the numeric leaves of the other metrics
files (taggers, frames, retrieval, ...) and a note on what differs from the paper's setting.
"""
import math
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.diffusion.config import ModelConfig
from pipeline.errors import PipelineError
from pipeline.io import atomic_path
from pipeline.metrics.relevance import BERTSCORE_LABEL, FLUENCY_LABEL, MISCORE_LABEL

BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
EXAMPLES = ("<!-- examples:begin -->", "<!-- examples:end -->")
STEERING = ("<!-- steering:begin -->", "<!-- steering:end -->")
# Systems shown beside each example, in order, with their labels.
EXAMPLE_ROWS = {"retrieval": "retrieved top-1", "retrieval_reranked": "retrieved, reranked", "diffusemp": "DiffusEmp",
                "diffusemp_edit": "DiffusEmp, edit of a retrieved candidate",
                "diffusemp_oracle": "DiffusEmp from the gold controls", "human": "gold"}

# (header, key in a scores.json system entry, decimals); the order of the paper's Table 2.
COLUMNS = [
    ("BERTScore", "bertscore_f1_minilm", 4), ("MIScore", "miscore_smollm2", 2), ("Fluency", "fluency_ppl_smollm2", 2),
    ("ACC-CM", "acc_cm", 2),
    ("ACC-IT", "acc_it", 2), ("F1-SF", "f1_sf", 2), ("D1", "dist_1", 2), ("D2", "dist_2", 2), ("D4", "dist_4", 2),
    ("sBL", "self_bleu_5", 2), ("AvgLen", "avg_len", 2),
]

# Paper Table 2 (Bi et al. 2023), same column order (the paper has no fluency column: None): the strongest baselines
# and the rows we reproduce.
PAPER_TABLE2 = {
    "BART": (0.5977, 706.31, None, 60.39, 30.69, 18.98, 2.88, 14.12, 38.82, 2.79, 11.09),
    "DiffuSeq": (0.5101, 715.95, None, 59.23, 28.58, 17.26, 1.79, 26.97, 88.17, 1.29, 10.30),
    "DiffusEmp": (0.5205, 626.92, None, 92.36, 84.24, 52.79, 2.84, 29.25, 73.45, 1.09, 14.12),
    "DiffusEmp (Oracle)": (0.7458, 615.13, None, 92.38, 83.66, 51.95, 2.84, 30.46, 89.35, 1.11, 14.01),
    "Human": (1.0000, 507.97, None, 100.00, 100.00, 98.40, 19.49, 43.55, 49.02, 0.85, 13.04),
}
OUR_ROWS = {"diffusemp": "DiffusEmp", "diffusemp_oracle": "DiffusEmp (Oracle)",
            "diffusemp_edit": "DiffusEmp edit", "retrieval": "Retrieval top-1",
            "retrieval_reranked": "Retrieval, reranked", "human": "Human"}

NOTE = f"""What differs from the paper, so compare trends, not absolute values:
- {BERTSCORE_LABEL}.
- {MISCORE_LABEL}: another language model, so another scale entirely.
- {FLUENCY_LABEL}: lower is more fluent; read it as a ratio to the human row.
- Controllability is measured with our own taggers (a fine-tuned MiniLM-L6 CM cross-encoder and intent classifier, a
  FrameNet lexicon SF tagger), not the paper's; each output is checked against the controls it was given.
- Dist-n, self-BLEU and AvgLen count lower-cased spaCy words; the CPU profile trains a smaller model and may score a
  seeded subset of the test split (the number of scored examples is above). Exact definitions: docs/metrics.md."""

# What each `sample.rerank` rule (pipeline.diffusion.config.RERANKS; tests check that every rule has an entry) reads to
# keep one draw, for the README's note: a column scored by the same model is partly the rule's own choice.
RERANK_JUDGES = {
    "none": "no judge (the first draw)",
    "mbr": "the other draws (the most similar one)",
    "fluency": "SmolLM2, the model of the Fluency column",
    "controls": "the taggers of ACC-CM and ACC-IT, then SmolLM2",
    "relevance": "SmolLM2, the model of the Fluency column, and the MiniLM encoder under BERTScore (the draw's "
                 "similarity to the context, never to the gold response)",
}


def cell(value, decimals: int) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{decimals}f}"


def results_table(scores: dict) -> str:
    """Markdown table: the paper's Table 2 rows, then ours (scores.json), one column per metric."""
    head = "| | " + " | ".join(h for h, _, _ in COLUMNS) + " |"
    lines = [head, "|" + "---|" * (len(COLUMNS) + 1)]
    lines += [f"| paper: {name} | " + " | ".join(cell(v, d) for v, (_, _, d) in zip(values, COLUMNS)) + " |"
              for name, values in PAPER_TABLE2.items()]
    lines += [f"| ours: {label} | " + " | ".join(cell(scores[system].get(key), d) for _, key, d in COLUMNS) + " |"
              for system, label in OUR_ROWS.items() if system in scores]
    return "\n".join(lines)


def numeric_leaves(obj, prefix: str = "") -> list[tuple[str, float]]:
    """(dotted key, value) of every number in a nested dict (lists are skipped: per-class detail)."""
    if isinstance(obj, dict):
        return [leaf for k, v in obj.items() for leaf in numeric_leaves(v, f"{prefix}{k}.")]
    if isinstance(obj, (int, float)) and not isinstance(obj, bool):
        return [(prefix[:-1], obj)]
    return []


def component_table(metrics: dict[str, dict]) -> str:
    """Markdown table of the numeric leaves of the other metrics files: file, key, value."""
    lines = ["| file | metric | value |", "|---|---|---|"]
    for name, obj in metrics.items():
        lines += [f"| {name} | {key} | {value:,} |" if isinstance(value, int) else f"| {name} | {key} | {value:.4g} |"
                  for key, value in numeric_leaves(obj)]
    return "\n".join(lines)


def decoding_note(num_samples: int, rerank: str, candidates: int, edit_candidates: int) -> str:
    """The note's lines on how the DiffusEmp rows were decoded (params.yaml `sample.num_samples`, `sample.rerank`,
    `sample.candidates` and `sample.edit_candidates`, null resolved to `retrieve.k`)."""
    def source(c: int) -> str:
        return "the top-1 candidate" if c == 1 else f"each of the top {c} retrieved candidates ({num_samples * c} in all)"

    if rerank == "none":
        return ("- The DiffusEmp rows are one draw per example (of the top-1 candidate), not reranked; the reranked "
                "retrieval row is the top-1 candidate.")
    return (f"- The DiffusEmp rows keep one of {num_samples} draws of {source(candidates)} (edit: of "
            f"{source(edit_candidates)}) per example by rerank rule `{rerank}`, which reads {RERANK_JUDGES[rerank]}: "
            "read those columns as partly the rule's choice (docs/diffusion.md). Each row is checked against the "
            "controls of the candidate its text came from.\n"
            f"- Retrieval, reranked: the candidate that the same rule keeps among the top {edit_candidates}, each "
            "judged by its own response: what the reranking buys without the diffusion model.")


# The paper's model (appendix A.4), for `model_note`.
PAPER_MODEL = ("continuous Gaussian diffusion over 128-d randomly initialised word embeddings, a 12-layer width-768 "
               "transformer trained from scratch, batch 128, 80k steps, 2,000 sampling steps")


def model_note(model: ModelConfig, steps: int, batch_size: int, sample_steps: int | None) -> str:
    """The note's line on which model produced the DiffusEmp rows and how it differs from the paper's (params.yaml
    `model`, `train.steps`, `train.batch_size`, `sample.steps`)."""
    minilm = model.init == "minilm"
    if model.family == "masked":
        family = ("the masked (absorbing-state discrete) diffusion family over WordPieces, not the paper's continuous "
                  "one (docs/diffusion.md says why)")
        chain = f"{sample_steps or 'one token per'} unmasking steps"
    else:
        space = (f"MiniLM's WordPiece embeddings standardised, frozen and divided by {model.noise_factor:g}, with x0 = "
                 "softmax(head) . E" if minilm else f"{model.emb_dim}-d randomly initialised embeddings")
        family = f"the paper's continuous (Gaussian) diffusion family over {space}"
        chain = f"{sample_steps or model.T} reverse steps"
    encoder = (f"the first {model.layers} layers of the pretrained MiniLM-L6 encoder, its WordPiece embeddings tied to "
               "the output head" if minilm else f"a {model.layers}-layer width-{model.width} transformer from scratch")
    return (f"- The DiffusEmp rows come from {family}; the denoiser is {encoder}, trained {steps:,} steps of batch "
            f"{batch_size} and sampled in {chain}. The paper (appendix A.4): {PAPER_MODEL}.")


def results_section(scores: dict, others: dict[str, dict], num_samples: int, rerank: str, candidates: int,
                    edit_candidates: int, model: str = "") -> str:
    """The generated block that goes between the README markers (the sample params: `decoding_note`; model: the
    `model_note` line, if any)."""
    note = "\n".join([NOTE, *([model] if model else []), decoding_note(num_samples, rerank, candidates, edit_candidates)])
    parts = [f"Generated by `dvc repro report` from metrics/*.json: do not edit by hand. "
             f"Scored examples: {scores.get('n_examples', 'n/a')}.", results_table(scores), note]
    if others:
        parts += ["<details><summary>Component metrics (taggers, frames, retrieval, ...)</summary>",
                  component_table(others), "</details>"]
    return "\n\n".join(parts)


def steering_section(report: dict) -> str:
    """The steering benchmark's table (metrics/steering.json, pipeline.steering): one row per request given alone."""
    head = ("| request (given alone) | adherence | nothing given | difference [95% interval] | all 3 CM as asked | "
            f"{FLUENCY_LABEL} | {BERTSCORE_LABEL} |")
    lines = [f"Generated by `dvc repro report` from metrics/steering.json ({report['examples']} test examples, "
             f"guidance w = {report.get('guidance', 1.0)}); shares x 100.", "", head, "|" + "---|" * 7]
    for name, r in report["requests"].items():
        kind, label = name.split("_", 1)
        asked = f"CM {label.upper()}" if kind == "cm" else f"intent {label} (first sentence)"
        diff, exact = r["adherence"] - r["base_rate"], cell(r["exact"], 1) if "exact" in r else "-"
        lines.append(f"| {asked} | {cell(r['adherence'], 1)} | {cell(r['base_rate'], 1)} | {diff:+.1f} "
                     f"[{r['low']:+.1f}, {r['high']:+.1f}] | {exact} | {cell(r['fluency_ppl'], 1)} "
                     f"| {cell(r['bertscore'], 4)} |")
    base = report["base"]
    lines.append(f"| nothing given (base) | | | | | {cell(base['fluency_ppl'], 1)} | {cell(base['bertscore'], 4)} |")
    lines.append(f"| human responses | | | | | {cell(report['human']['fluency_ppl'], 1)} | |")
    return "\n".join(lines)


def examples_section(outputs: pd.DataFrame, contexts: dict[str, list[str]], seed: int, n: int = 5,
                     systems: dict[str, str] = EXAMPLE_ROWS, command: str = "dvc repro report") -> str:
    """n scored examples picked by `seed` (not by hand): the context's last turns, then each system's output.

    outputs: data/scores/per_example.parquet rows (system, example_id, text); contexts: example_id -> utterances;
    systems: system -> its label, in the order shown; command: the one that regenerates them."""
    ids = sorted(set(outputs["example_id"]))
    picked = sorted(np.random.default_rng(seed).choice(len(ids), size=min(n, len(ids)), replace=False))
    text = outputs.set_index(["system", "example_id"])["text"]
    blocks = [f"Picked by `seed` among the {len(ids)} scored test examples (`{command}` regenerates them)."]
    for i in picked:
        eid = ids[i]
        turns = " / ".join(contexts[eid][-2:])
        lines = [f"**{eid}**, context (last turns): {turns}"]
        lines += [f"- {label}: {text.get((system, eid), 'n/a') or '(empty)'}" for system, label in systems.items()]
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def replace_section(readme: str, section: str, path="README.md", markers: tuple[str, str] = (BEGIN, END)) -> str:
    """`readme` with the text between the two marker lines replaced by `section`."""
    begin, end = markers
    if readme.count(begin) != 1 or readme.count(end) != 1 or readme.index(begin) > readme.index(end):
        raise PipelineError(f"{path} must hold one `{begin}` line and, after it, one `{end}` line where the "
                            "generated text goes: add them")
    head, rest = readme.split(begin)
    _, tail = rest.split(end)
    return f"{head}{begin}\n{section}\n{end}{tail}"


def update_readme(path, sections: dict[tuple[str, str], str]) -> None:
    """Rewrite the marked sections of the README at `path` in place: markers -> generated text."""
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: run stages from the repository root")
    text = path.read_text()
    for markers, section in sections.items():
        text = replace_section(text, section, path, markers)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
