"""Stage report_baselines: docs/baselines.md's generated block (between `<!-- baselines:begin -->` and
`<!-- baselines:end -->`) from metrics/baselines.json, metrics/bench_baselines.json, the training timings and the
scored outputs: Table 2 with the baselines and their intervals, the speed table, sample outputs."""
import pandas as pd
import typer

from pipeline.baselines import SYSTEMS
from pipeline.baselines.compare import BASE
from pipeline.baselines.page import LABELS, baselines_section, training_minutes
from pipeline.cli import guard
from pipeline.io import read_frame, read_json
from pipeline.params import load_params, value
from pipeline.report import examples_section, update_readme
from pipeline.schemas import DIALOGUES, SCORES

app = typer.Typer(add_completion=False)
MARKERS = ("<!-- baselines:begin -->", "<!-- baselines:end -->")


@app.command()
@guard
def main(scores: str = "metrics/baselines.json", bench: str = "metrics/bench_baselines.json",
         timings_dir: str = "metrics/timings", per_example: str = "data/scores/baselines.parquet",
         dialogues: str = "data/prepared/dialogues.parquet", steering: str = "metrics/steering.json",
         steering_baseline: str = "metrics/steering_baselines.json", page: str = "docs/baselines.md",
         params: str = "params.yaml") -> None:
    seed = value(load_params(params), "seed", int)
    table = read_frame(dialogues, DIALOGUES, stage="prepare")
    outputs = read_frame(per_example, SCORES, stage="baselines/dvc.yaml:score")[["system", "example_id", "text"]]
    gold = table[table["example_id"].isin(set(outputs["example_id"]))]
    outputs = pd.concat([outputs, pd.DataFrame({"system": "human", "example_id": gold["example_id"],
                                                "text": gold["response"]})], ignore_index=True)
    examples = examples_section(outputs, dict(zip(table["example_id"], table["context"])), seed, n=3,
                                systems={**{name: LABELS[name] for name in (BASE, *SYSTEMS)}, "human": "gold"},
                                command="make baselines")
    section = baselines_section(read_json(scores, stage="baselines/dvc.yaml:score"),
                                read_json(bench, stage="baselines/dvc.yaml:bench"), training_minutes(timings_dir),
                                examples,
                                (read_json(steering, stage="steering"),
                                 read_json(steering_baseline, stage="baselines/dvc.yaml:steering")))
    update_readme(page, {MARKERS: section})


if __name__ == "__main__":
    app()
