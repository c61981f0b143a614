"""Stage score: every Table 2 metric for human / retrieval / retrieval_reranked / diffusemp / diffusemp_oracle /
diffusemp_edit on the sampled examples -> metrics/scores.json (one entry per system), data/scores/per_example.parquet,
data/scores/labels.parquet (the re-tagged and control CM and intents of the same rows, for the ablation study's
bootstrap), plots/cm.csv (Figure 4 data). retrieval_reranked reruns `sample.rerank` on the own responses of the
candidates the edit mode generates from (`sample.edit_candidates`; its judges: pipeline.judges)."""
import typer

from pipeline.cli import guard
from pipeline.diffusion.config import SampleConfig
from pipeline.io import atomic_path, read_frame, write_frame, write_json
from pipeline.judges import load_judges
from pipeline.params import load_params, section, value
from pipeline.schemas import CANDIDATES, CONTROLS, DIALOGUES, SAMPLES, SCORES
from pipeline.scoring import (SCORE_LABELS, ScoreParams, Scorers, assemble_systems, cm_points, json_safe,
                             reranked_sources, score_systems)
from pipeline.subset import control_rows
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", controls: str = "data/signals/controls.parquet",
         candidates: str = "data/retrieval/candidates.parquet", oracle: str = "data/retrieval/oracle.parquet",
         retrieved_samples: str = "data/samples/retrieved.parquet", oracle_samples: str = "data/samples/oracle.parquet",
         edit_samples: str = "data/samples/edit.parquet",
         taggers: str = "models/taggers", framenet: str = "data/raw/framenet", frames_model: str = "models/frames",
         per_example: str = "data/scores/per_example.parquet", labels: str = "data/scores/labels.parquet",
         metrics: str = "metrics/scores.json",
         cm_plot: str = "plots/cm.csv", params: str = "params.yaml") -> None:
    all_params = load_params(params)
    cfg, sampling = section(all_params, "score", ScoreParams), section(all_params, "sample", SampleConfig)
    # The tag stage's CM threshold, so that re-tagging the human responses reproduces their stored controls.
    threshold = section(all_params, "tag", TagParams).cm_threshold
    control_table, candidate_table = (read_frame(controls, CONTROLS, stage="controls"),
                                      read_frame(candidates, CANDIDATES, stage="retrieve"))
    rows = control_rows(control_table, candidate_table, sampling.for_edit(), value(all_params, "seed", int),
                        candidates)  # the candidates the edit mode generates from
    reranked = reranked_sources(rows, sampling.rerank, load_judges(sampling.rerank, taggers, threshold))
    systems = assemble_systems(
        read_frame(dialogues, DIALOGUES, stage="prepare"), control_table, candidate_table,
        read_frame(oracle, CANDIDATES, stage="retrieve"), read_frame(retrieved_samples, SAMPLES, stage="sample@retrieved"),
        read_frame(oracle_samples, SAMPLES, stage="sample@oracle"), read_frame(edit_samples, SAMPLES, stage="sample@edit"),
        reranked)
    table, scores = score_systems(systems, Scorers.load(cfg, taggers, threshold, framenet, frames_model))
    write_frame(per_example, table, SCORES)
    write_frame(labels, table, SCORE_LABELS)
    write_json(metrics, json_safe(scores))
    with atomic_path(cm_plot, ".csv") as tmp:
        cm_points(scores).to_csv(tmp, index=False, float_format="%.4f")


if __name__ == "__main__":
    app()
