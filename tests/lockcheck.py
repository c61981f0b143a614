"""Is dvc.lock up to date with the code and params.yaml? The offline half of `dvc status`, for CI.

`stale_stages(root)` compares, for every stage of the project's pipelines (PIPELINES: root/dvc.yaml, and
root/baselines/dvc.yaml, whose stages run from the root: wdir ..), its entry in the dvc.lock beside its dvc.yaml with the
working tree:
- the recorded md5 of every dependency that is a file known to git (code, committed metrics; DVC 3 records the plain md5
  of the bytes); directories and data outputs (ignored by git, not in a CI checkout) are left to `dvc status`;
- the recorded params (`params: {params.yaml: {key: value}}`, keys top-level, dotted or whole sections) with the file;
- the recorded cmd and the lists of deps and params with the ones dvc.yaml declares now (DVC reruns on those too).
It returns one line per stale stage naming what changed and the command that fixes it; a stage with no lock entry
is reported as never run.
"""
import hashlib
import re
import subprocess
from pathlib import Path

import yaml

MISSING = object()  # a key absent from one side


class LockLoader(yaml.SafeLoader):
    """DVC writes small floats as `5e-05`, which YAML 1.1 (PyYAML) reads as a string: read them as floats."""


LockLoader.add_implicit_resolver("tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+$"),
                                 list("-+0123456789"))
PIPELINES = ("dvc.yaml", "baselines/dvc.yaml")  # every dvc.yaml of the project; each stage's paths are root-relative


def address(pipeline: str, name: str) -> str:
    """A stage's name as `dvc repro` takes it: bare for root/dvc.yaml, `path/dvc.yaml:name` for another pipeline."""
    return name if pipeline == "dvc.yaml" else f"{pipeline}:{name}"


def render(value, subst: dict):
    """`value` (str, list or dict, nested) with every `${name}` of `subst` replaced, as DVC's foreach does."""
    if isinstance(value, str):
        for name, sub in subst.items():
            value = value.replace("${" + name + "}", str(sub))
        return value
    if isinstance(value, list):
        return [render(v, subst) for v in value]
    if isinstance(value, dict):
        return {render(k, subst): render(v, subst) for k, v in value.items()}
    return value


def stage_definitions(root: Path) -> dict[str, dict]:
    """Every pipeline's stages with every foreach expanded: address (`address` of name or name@key) -> definition
    (cmd, deps, params, ...). A pipeline file that is absent has no stages."""
    return {address(pipeline, name): stage for pipeline in PIPELINES for name, stage in pipeline_stages(root, pipeline).items()}


def pipeline_stages(root: Path, pipeline: str) -> dict[str, dict]:
    """root/pipeline's stages with every foreach expanded: name or name@key -> definition."""
    out = {}
    if not (root / pipeline).exists():
        return out
    for name, stage in yaml.safe_load((root / pipeline).read_text())["stages"].items():
        if "foreach" not in stage:
            out[name] = stage
            continue
        items = stage["foreach"]
        for key, item in items.items() if isinstance(items, dict) else zip(items, items):
            out[f"{name}@{key}"] = render(stage["do"], {"key": key, "item": item})
    return out


def declared_params(stage: dict) -> set[tuple[str, str]]:
    """(params file, key) pairs of a dvc.yaml stage: `- key` reads params.yaml, `- file.yaml: [keys]` another file."""
    pairs = set()
    for entry in stage.get("params", []):
        if isinstance(entry, str):
            pairs.add(("params.yaml", entry))
        else:
            pairs |= {(file, key) for file, keys in entry.items() for key in keys}
    return pairs


def lookup(params: dict, key: str):
    """params[a][b] for key "a.b" (MISSING when absent)."""
    for part in key.split("."):
        if not isinstance(params, dict) or part not in params:
            return MISSING
        params = params[part]
    return params


def changed_keys(key: str, old, new) -> list[str]:
    """The leaf keys under `key` whose value differs between `old` and `new` (whole sections compared leaf by leaf)."""
    if isinstance(old, dict) and isinstance(new, dict):
        return [changed for sub in sorted(old.keys() | new.keys())
                for changed in changed_keys(f"{key}.{sub}", old.get(sub, MISSING), new.get(sub, MISSING))]
    return [] if old == new else [key]


def known_to_git(root: Path) -> set[str]:
    """Paths git knows under root: tracked, and untracked but not ignored (what a commit would add)."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"], cwd=root,
                            check=True, capture_output=True, text=True).stdout
    return set(filter(None, listed.split("\0")))


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def stage_changes(root: Path, stage: dict, entry: dict, git_files: set[str], params: dict[str, dict]) -> list[str]:
    """What differs between a stage's dvc.lock entry and its dvc.yaml definition + the working tree (empty: fresh).

    git_files: known_to_git(root); params: params file name -> its parsed content (a missing file is absent).
    """
    changes = []
    if stage["cmd"] != entry.get("cmd"):
        changes.append("cmd changed in dvc.yaml")
    recorded = {d["path"]: d for d in entry.get("deps", [])}
    declared = set(map(str, stage.get("deps", [])))
    edited = [p for p, d in sorted(recorded.items())  # git lists files only: directories and data are left out
              if p in git_files and (not (root / p).is_file() or md5(root / p) != d.get("md5"))]
    for what, paths in (("changed", edited), ("new dep", sorted(declared - recorded.keys())),
                        ("dropped dep", sorted(recorded.keys() - declared))):
        if paths:
            changes.append(f"{what} {', '.join(paths)}")
    locked = {(file, key): value for file, values in entry.get("params", {}).items() for key, value in values.items()}
    keys = sorted({changed for (file, key), value in locked.items()
                   for changed in changed_keys(key, value, lookup(params.get(file, {}), key))})
    keys += sorted(f"{key} (not recorded)" for _, key in declared_params(stage) - locked.keys())
    keys += sorted(f"{key} (no longer declared)" for _, key in locked.keys() - declared_params(stage))
    if keys:
        changes.append(f"params {', '.join(keys)}")
    return changes


def stale_stages(root: Path) -> list[str]:
    """One line per stage of every pipeline whose dvc.lock entry is missing or out of date (empty: all fresh)."""
    git_files = known_to_git(root)
    lines = []
    for pipeline in PIPELINES:
        stages = pipeline_stages(root, pipeline)
        lock_path = root / pipeline.replace("dvc.yaml", "dvc.lock")
        entries = (yaml.load(lock_path.read_text(), Loader=LockLoader) or {}).get("stages", {}) if lock_path.exists() \
            else {}
        files = {file for e in entries.values() for file in e.get("params", {})} | {"params.yaml"}
        params = {file: yaml.safe_load((root / file).read_text()) for file in files if (root / file).exists()}
        for name, stage in stages.items():
            changes = ["never run (no dvc.lock entry)"] if name not in entries else \
                stage_changes(root, stage, entries[name], git_files, params)
            if changes:
                where = address(pipeline, name)
                lines.append(f"{where}: {'; '.join(changes)} -> run `dvc repro {where}`, then commit its dvc.lock "
                             "with metrics/, README.md and docs/")
    return lines
