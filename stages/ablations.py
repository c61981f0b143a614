"""The ablation study (paper Tables 4 and 5, Table 2's DiffuSeq row) as six DVC experiments (pipeline/ablations.py).

Not a stage of the DAG (it trains six models: about 2 hours on 2 cores at params.yaml's `ablations` budget); on a
checkout whose default pipeline is reproduced (`dvc status` clean up to retrieval):
    python -m stages.ablations queue             # = make ablations: queue the six experiments, start one worker
    python -m stages.ablations queue --dry-run   # print the dvc command lines only
    dvc queue status                              # until all six are Success
    python -m stages.ablations collect           # -> metrics/ablations.json and the tables in README, docs/diffusion.md
    python -m stages.ablations probe --experiment full   # does that model read its CM? -> metrics/probe/full.json
"""
import dataclasses
import json
import shlex
import subprocess
import tempfile
from pathlib import Path

import typer
import yaml
from dvc.api import DVCFileSystem, read as dvc_read

from pipeline.cli import guard  # first: it sets HF_HUB_OFFLINE before anything imports a model hub client
from pipeline.ablations import (BEGIN, END, TIMINGS_PATH, VARIANTS, AblationParams, collect, experiment_scores,
                                experiments, queue_commands, stale_stages, tables_section)
from pipeline.control_probe import attention_mass, cm_probe
from pipeline.decoder import Decoder, SteeredSample
from pipeline.diffusion.checkpoint import load_model
from pipeline.diffusion.config import SampleConfig, TrainConfig
from pipeline.diffusion.inputs import encode_rows
from pipeline.embeddings import context_text
from pipeline.errors import PipelineError
from pipeline.io import read_frame, write_json
from pipeline.judges import load_judges
from pipeline.metrics.control import CM_COLUMNS
from pipeline.params import load_params, section, value
from pipeline.report import update_readme
from pipeline.schemas import CANDIDATES, CONTROLS
from pipeline.scoring import json_safe
from pipeline.seeding import seed_everything
from pipeline.subset import control_rows, group_size
from pipeline.tagging import Taggers, TagParams

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


@app.command()
@guard
def probe(experiment: str = typer.Option("", help="an experiment of `make ablations` whose model is probed (e.g. "
                                                  "full); empty: the model at --model"),
          rev: str = typer.Option("HEAD", help="the baseline commit the experiments were run from"),
          model: str = "models/diffusion", candidates: str = "data/retrieval/candidates.parquet",
          controls: str = "data/signals/controls.parquet", taggers: str = "models/taggers",
          out: str = typer.Option("", help="default: metrics/probe/<experiment, or default>.json"),
          params: str = "params.yaml") -> None:
    """Does the model read its CM? The random-CM probe and the attention mass of pipeline/control_probe.py, on the
    study's test examples, decoded as stage sample decodes them: with the candidate's intents and frames given
    (random_cm), and with the CM given alone, as respond gives a hand-set CM (random_cm_alone)."""
    p = load_params(params)
    study, seed = section(p, "ablations", AblationParams), value(p, "seed", int)
    cfg = dataclasses.replace(section(p, "sample", SampleConfig), subset=study.subset)
    threshold = section(p, "tag", TagParams).cm_threshold
    seed_everything(seed)
    with tempfile.TemporaryDirectory() as tmp:
        if experiment:
            exp = experiments(json.loads(run_dvc("exp", "show", "--json", "--rev", rev)), [experiment])[experiment]
            model = str(Path(tmp) / "model")
            DVCFileSystem(".", rev=exp["rev"]).get("models/diffusion", model, recursive=True)
        net, vocab = load_model(model)
    if "cm" not in net.cfg.signals:
        raise PipelineError(f"the model's signals are {list(net.cfg.signals)}: it has no CM tokens to probe")
    pool = read_frame(candidates, CANDIDATES, stage="retrieve")
    rows = control_rows(read_frame(controls, CONTROLS, stage="controls"), pool, cfg, seed, candidates)
    tagger = Taggers.load(taggers, names=("cm",))
    tag_cm = lambda contexts, texts: tagger.mechanisms([context_text(c) for c in contexts], texts) > threshold
    decoder = Decoder(net, vocab, cfg, load_judges(cfg.rerank, taggers, threshold),
                      section(p, "steered_sample", SteeredSample))
    steps = exp["params"]["train"]["steps"] if experiment else section(p, "train", TrainConfig).steps
    results = {"model": f"experiment {experiment} ({exp['rev'][:7]})" if experiment else model, "train_steps": steps,
               "random_cm": cm_probe(decoder, rows, pool[list(CM_COLUMNS)].to_numpy(bool), group_size(rows), seed,
                                     tag_cm, study.resamples),
               # respond's rule for a hand-set CM: the candidate's intents and frames are freed (pipeline.respond)
               "random_cm_alone": cm_probe(decoder, [{**r, "given": ["cm"]} for r in rows],
                                           pool[list(CM_COLUMNS)].to_numpy(bool), group_size(rows), seed, tag_cm,
                                           study.resamples),
               "attention": attention_mass(net, encode_rows(rows, vocab, net.cfg, gold=False), cfg.batch_size)}
    write_json(out or f"metrics/probe/{experiment or 'default'}.json", results)


if __name__ == "__main__":
    app()
