"""The ablation study (paper Tables 4 and 5, Table 2's DiffuSeq row) as six DVC experiments (pipeline/ablations.py).

Not a stage of the DAG (it trains six models: about 2.5 hours on 2 cores at params.yaml's `ablations` budget); on a checkout whose
default pipeline is reproduced (`dvc status` clean up to retrieval):
    python -m stages.ablations queue             # = make ablations: queue the six experiments, start one worker
    python -m stages.ablations queue --dry-run   # print the dvc command lines only
    dvc queue status                              # until all six are Success
    python -m stages.ablations collect           # -> metrics/ablations.json and the tables in README, docs/diffusion.md
"""
import json
import shlex
import subprocess
from pathlib import Path

import typer
import yaml
from dvc.api import read as dvc_read

from pipeline.cli import guard  # first: it sets HF_HUB_OFFLINE before anything imports a model hub client
from pipeline.ablations import (BEGIN, END, TIMINGS_PATH, VARIANTS, AblationParams, collect, experiment_scores,
                                experiments, queue_commands, stale_stages, tables_section)
from pipeline.diffusion.config import TrainConfig
from pipeline.errors import PipelineError
from pipeline.io import write_json
from pipeline.params import load_params, section
from pipeline.report import update_readme
from pipeline.scoring import json_safe

app = typer.Typer(add_completion=False)


def run_dvc(*args: str) -> str:
    """Run `dvc <args>` -> its stdout; a failure is one PipelineError line."""
    proc = subprocess.run(["dvc", *args], capture_output=True, text=True)
    if proc.returncode:
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise PipelineError(f"`dvc {' '.join(args)}` failed: {last}")
    return proc.stdout


@app.command()
@guard
def queue(params: str = "params.yaml", dvc_yaml: str = "dvc.yaml",
          dry_run: bool = typer.Option(False, help="print the dvc command lines; run nothing")) -> None:
    commands = queue_commands(section(load_params(params), "ablations", AblationParams),
                              yaml.safe_load(Path(dvc_yaml).read_text()))
    if dry_run:
        print("\n".join(shlex.join(c) for c in commands))
        return
    stale = stale_stages(json.loads(run_dvc("status", "--json") or "{}"))
    if stale:
        raise PipelineError(f"stages {stale} are not up to date: every experiment would rerun them; `dvc repro` first")
    taken = sorted(set(VARIANTS) & set(run_dvc("exp", "list", "--all-commits", "--names-only").split()))
    if taken:
        raise PipelineError(f"experiments {taken} exist (DVC refuses a name twice): `dvc exp remove {' '.join(taken)}`")
    for command in commands:
        print(shlex.join(command))
        run_dvc(*command[1:])


@app.command("collect")
@guard
def collect_command(out: str = "metrics/ablations.json", readme: list[str] = typer.Option(["README.md",
                                                                                           "docs/diffusion.md"]),
                    rev: str = typer.Option("HEAD", help="the baseline commit the experiments were run from"),
                    params: str = "params.yaml") -> None:
    p = load_params(params)
    study = section(p, "ablations", AblationParams)
    found = experiments(json.loads(run_dvc("exp", "show", "--json", "--rev", rev)), VARIANTS)
    frames, minutes = {}, {}
    for name, exp in found.items():
        frames[name] = experiment_scores(name, lambda path, rev=exp["rev"]: dvc_read(path, rev=rev, mode="rb"))
        minutes[name] = json.loads(dvc_read(TIMINGS_PATH, rev=exp["rev"])).get("train_minutes")
    results = collect(found, frames, minutes, study)
    write_json(out, json_safe(results))
    text = tables_section(json_safe(results), section(p, "train", TrainConfig).steps)
    for path in readme:
        update_readme(path, {(BEGIN, END): text})


if __name__ == "__main__":
    app()
