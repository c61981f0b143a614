"""Two smoke runs of the whole DVC pipeline on a tiny synthetic mirror, in a temporary copy of the repository.

Checks that every stage runs and writes its outputs, that a second `dvc repro` changes nothing, and that running it all
again from an empty cache reproduces every output bit for bit (the md5s in dvc.lock), timing files aside. The
baselines' pipeline (baselines/dvc.yaml, `make baselines`) runs once on the first run's outputs, with tiny models.
"""
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from tests.lockcheck import pipeline_stages
from tests.synthetic import write_mirror

ROOT = Path(__file__).resolve().parents[1]

# The tiny profile: the smallest settings that still exercise every code path.
SMOKE_PARAMS = {
    "download": {"verify": "record"},
    "train_taggers": {"C": [0.1, 1.0]},
    "model": {"layers": 1, "T": 20},  # the default MiniLM-initialised masked model, cut to one layer
    "train": {"steps": 2, "batch_size": 2, "valid_examples": 2},
    "sample": {"subset": 2, "steps": 2},
    # Where bf16 is emulated (AVX2) a 2048 bfloat16 matmul takes some 20 s: the peaks are timed on 256.
    "bench": {"train_steps": 1, "sample_batch": 1, "sample_steps": [2], "matmul_size": 256},
    "baselines": {"resamples": 20, "bench_responses": 2,
                  "trs": {"width": 16, "heads": 2, "layers": 1, "ffn": 32, "max_source": 16, "max_response": 6},
                  "trs_train": {"steps": 2, "batch_size": 2, "warmup_steps": 1},
                  "lm": {"max_prompt": 16, "max_response": 4},  # SmolLM2 itself: one step of two short pairs
                  "lm_train": {"steps": 1, "batch_size": 2, "warmup_steps": 1}},
}


def merge(base: dict, override: dict) -> dict:
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merge(base[key], value)
        else:
            base[key] = value
    return base


def copy_repo(dest: Path) -> None:
    """Copy the files git knows of (tracked, and untracked but not ignored), as a fresh clone would have them."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=ROOT,
                            check=True, capture_output=True, text=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def holds_timings(path: str) -> bool:
    """Outputs that record wall-clock time, the only ones two runs may disagree on: the timings files, the benchmark,
    and the training state (it keeps the minutes trained and the throughput log, so that a resumed run can stop at
    train.max_minutes; its weights and RNG states are what the final model.pt, which is compared, is made of)."""
    return (path.startswith("metrics/timings/") or path == "metrics/bench.json"
            or path == "models/diffusion_checkpoint.pt")


def output_md5s(repo: Path) -> dict[str, str]:
    """Output path -> md5 recorded in repo/dvc.lock (outs, metrics and plots; a directory's ends in .dir)."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    return {out["path"]: out.get("md5") for stage in lock["stages"].values() for out in stage.get("outs", [])}


def ran_and_wrote(output: str, repo: Path, pipeline: str) -> list[str]:
    """Assert that every stage of `pipeline` ran (named in `output`) and wrote its outputs -> those outputs."""
    outputs = []
    for name, stage in pipeline_stages(ROOT, pipeline).items():
        shown = name if pipeline == "dvc.yaml" else f"{pipeline}:{name}"
        assert f"'{shown}'" in output, f"stage {shown} did not run:\n{output[-3000:]}"
        for out in [*stage.get("outs", []), *stage.get("metrics", []), *stage.get("plots", [])]:
            path = out if isinstance(out, str) else next(iter(out))
            assert (repo / path).exists(), f"stage {shown} did not write {path}"
            outputs.append(path)
    return outputs


def run(cmd: list[str], cwd: Path, env: dict) -> str:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc.stdout + proc.stderr


def test_dvc_repro_runs_every_stage_is_idempotent_and_deterministic(tmp_path):
    repo, mirror = tmp_path / "repo", tmp_path / "mirror"
    copy_repo(repo)
    write_mirror(mirror)
    params = merge(yaml.safe_load((repo / "params.yaml").read_text()), SMOKE_PARAMS)
    params["download"]["mirror"] = str(mirror)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t", "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t"}
    run(["git", "init", "-q"], repo, env)
    run(["git", "add", "-A"], repo, env)
    run(["git", "commit", "-qm", "smoke"], repo, env)

    outputs = ran_and_wrote(run(["dvc", "repro"], repo, env), repo, "dvc.yaml")
    ran_and_wrote(run(["dvc", "repro", "baselines/dvc.yaml"], repo, env), repo, "baselines/dvc.yaml")

    for pipeline in ("dvc.yaml", "baselines/dvc.yaml"):
        second = run(["dvc", "repro", pipeline], repo, env)
        assert "Running stage" not in second, f"second dvc repro {pipeline} reran stages:\n{second[-3000:]}"
    assert subprocess.run(["dvc", "status", "-q"], cwd=repo, env=env).returncode == 0

    # Everything again from nothing: no cache, no run cache, no outputs (the persisted checkpoint included). The first
    # run's outputs move to first_run/ for diffing; README.md is only copied: stage report rewrites it in place.
    before, kept = output_md5s(repo), tmp_path / "first_run"
    for path in [".dvc/cache", *outputs]:
        (kept / path).parent.mkdir(parents=True, exist_ok=True)
        (shutil.copy if path == "README.md" else shutil.move)(repo / path, kept / path)
    run(["dvc", "repro", "--force"], repo, env)
    after = output_md5s(repo)
    differ = [f"{path}: {before.get(path)} then {after.get(path)}" for path in sorted(before.keys() | after.keys())
              if before.get(path) != after.get(path) and not holds_timings(path)]
    assert not differ, f"outputs differ between two runs from an empty cache (first run: {kept}):\n" + "\n".join(differ)
