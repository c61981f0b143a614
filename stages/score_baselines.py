"""Stage score_baselines: every Table 2 metric of diffusemp (data/samples/retrieved.parquet) and of each baseline
(data/samples/baselines/<name>.parquet) on the same test examples with stage score's scorers -> metrics/baselines.json
(per system, and each baseline's paired bootstrap 95% interval of its difference from diffusemp on BERTScore,
fluency, ACC-CM, ACC-IT and F1-SF: pipeline/baselines/compare.py) and data/scores/baselines.parquet (schema SCORES)."""
import typer

from pipeline.baselines import SYSTEMS
from pipeline.baselines.compare import assemble, compare
from pipeline.baselines.fit import BaselinesParams
from pipeline.cli import guard
from pipeline.io import read_frame, write_frame, write_json
from pipeline.params import load_params, section
from pipeline.schemas import CANDIDATES, CONTROLS, DIALOGUES, SAMPLES, SCORES
from pipeline.scoring import ScoreParams, Scorers, json_safe, score_systems
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(dialogues: str = "data/prepared/dialogues.parquet", controls: str = "data/signals/controls.parquet",
         candidates: str = "data/retrieval/candidates.parquet", retrieved_samples: str = "data/samples/retrieved.parquet",
         samples_dir: str = "data/samples/baselines", taggers: str = "models/taggers",
         framenet: str = "data/raw/framenet", frames_model: str = "models/frames",
         per_example: str = "data/scores/baselines.parquet", metrics: str = "metrics/baselines.json",
         params: str = "params.yaml") -> None:
    p = load_params(params)
    systems = assemble(read_frame(dialogues, DIALOGUES, stage="prepare"), read_frame(controls, CONTROLS, stage="controls"),
                       read_frame(candidates, CANDIDATES, stage="retrieve"),
                       read_frame(retrieved_samples, SAMPLES, stage="sample@retrieved"),
                       {name: read_frame(f"{samples_dir}/{name}.parquet", SAMPLES, stage=f"sample_baseline@{name}")
                        for name in SYSTEMS})
    scorers = Scorers.load(section(p, "score", ScoreParams), taggers, section(p, "tag", TagParams).cm_threshold,
                           framenet, frames_model)
    table, scores = score_systems(systems, scorers)
    write_frame(per_example, table, SCORES)
    write_json(metrics, json_safe(compare(table, scores, section(p, "baselines", BaselinesParams).resamples)))


if __name__ == "__main__":
    app()
