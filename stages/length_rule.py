"""The length rule's measurement (pipeline/experiments/length_rule.py): where a freed structure's length could come
from, against the gold responses' lengths -> plots/length_rule.json. Off the DAG; no decoding:
    python -m stages.length_rule --split valid
"""
import typer

from pipeline.cli import guard
from pipeline.experiments.length_rule import length_rule_errors
from pipeline.io import read_frame, write_json
from pipeline.params import load_params, section, value
from pipeline.schemas import CANDIDATES, CONTROLS
from pipeline.steering import SteeringParams
from pipeline.subset import eval_subset

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(split: str = "valid", candidates: str = "data/retrieval/candidates.parquet",
         controls: str = "data/signals/controls.parquet", out: str = "plots/length_rule.json",
         params: str = "params.yaml") -> None:
    p = load_params(params)
    table = read_frame(controls, CONTROLS, stage="controls")
    examples = table[table["split"] == split]
    ids = eval_subset(examples["example_id"], section(p, "steering", SteeringParams).subset, value(p, "seed", int))
    cands = read_frame(candidates, CANDIDATES, stage="retrieve")
    top = cands[cands["rank"] == 0].set_index("example_id").loc[ids]
    report = length_rule_errors(table[table["split"] == "train"], examples.set_index("example_id").loc[ids], top)
    write_json(out, {"split": split, **report})


if __name__ == "__main__":
    app()
