"""dvc.lock is up to date with the committed code and params.yaml (tests/lockcheck.py), and the check can fail."""
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.lockcheck import (PIPELINES, declared_params, known_to_git, lookup, md5, pipeline_stages, stage_definitions,
                             stale_stages)

ROOT = Path(__file__).resolve().parents[1]


def test_dvc_lock_matches_the_code_and_params():
    stale = stale_stages(ROOT)
    assert not stale, "dvc.lock is stale: commit it only after `dvc repro`\n" + "\n".join(stale)


@pytest.fixture
def fresh_copy(tmp_path) -> Path:
    """Every pipeline's dvc.yaml, params.yaml and every dependency git knows of, copied into a git repository with a
    dvc.lock beside each dvc.yaml written to match them: the recorded md5 of each such file, the declared params'
    values, and a dummy md5 for data deps."""
    stages, git_files = stage_definitions(ROOT), known_to_git(ROOT)
    code = {d for s in stages.values() for d in map(str, s.get("deps", [])) if d in git_files}
    for rel in [*PIPELINES, "params.yaml", *code]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / rel, tmp_path / rel)
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "-A"], cwd=tmp_path, check=True)

    params = yaml.safe_load((tmp_path / "params.yaml").read_text())
    for pipeline in PIPELINES:
        lock = {"schema": "2.0", "stages": {name: {
            "cmd": stage["cmd"],
            "deps": [{"path": d, "hash": "md5", "md5": md5(tmp_path / d) if d in code else "0" * 32 + ".dir"}
                     for d in map(str, stage.get("deps", []))],
            "params": {"params.yaml": {key: lookup(params, key) for _, key in sorted(declared_params(stage))}},
        } for name, stage in pipeline_stages(tmp_path, pipeline).items()}}
        (tmp_path / pipeline.replace("dvc.yaml", "dvc.lock")).write_text(yaml.safe_dump(lock, sort_keys=False))
    return tmp_path


def stale_names(root: Path) -> dict[str, str]:
    return {line.split(": ", 1)[0]: line for line in stale_stages(root)}


def test_a_consistent_lock_passes(fresh_copy):
    assert stale_stages(fresh_copy) == []


@pytest.mark.parametrize("path", ["stages/prepare.py", "pipeline/taggers.py"])
def test_an_edited_module_flags_every_stage_that_depends_on_it(fresh_copy, path):
    with open(fresh_copy / path, "a") as f:
        f.write("# edited\n")
    users = {name for name, stage in stage_definitions(fresh_copy).items() if path in stage.get("deps", [])}
    assert len(users) == 1 if path.startswith("stages/") else len(users) > 1  # a stage module; a shared module
    stale = stale_names(fresh_copy)
    assert stale.keys() == users
    assert all(f"changed {path} ->" in line and f"`dvc repro {name}`" in line for name, line in stale.items())


def test_a_changed_param_flags_the_stages_that_read_it(fresh_copy):
    params = yaml.safe_load((fresh_copy / "params.yaml").read_text())
    params["encode"]["batch_size"] += 1
    (fresh_copy / "params.yaml").write_text(yaml.safe_dump(params))
    # encode reads its whole section, tag_frames and the taggers read encode.batch_size: all name the leaf key.
    stale = stale_names(fresh_copy)
    assert {"encode", "tag_frames", "train_taggers@emotion"} <= stale.keys()
    assert stale.keys() == {name for name, stage in stage_definitions(fresh_copy).items()
                            if {"encode", "encode.batch_size"} & set(stage.get("params", []))}
    assert all("params encode.batch_size ->" in line for line in stale.values())


def test_a_stage_missing_from_the_lock_or_declared_anew_is_reported(fresh_copy):
    lock = yaml.safe_load((fresh_copy / "dvc.lock").read_text())
    del lock["stages"]["report"]
    lock["stages"]["retrieve"]["deps"].pop()
    (fresh_copy / "dvc.lock").write_text(yaml.safe_dump(lock))
    stale = stale_names(fresh_copy)
    assert stale.keys() == {"report", "retrieve"}
    assert "never run" in stale["report"] and "new dep " in stale["retrieve"]
