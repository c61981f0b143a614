"""Every stage that reads params.yaml checks it first: a typo, a missing key or a wrong type is one `error:` line that
names the key and what it expects, before any data is read."""
import importlib
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from pipeline.errors import PipelineError
from pipeline.params import check, conforms, type_name, value

ROOT = Path(__file__).resolve().parents[1]

# (stage module, extra CLI arguments, the section it reads first)
STAGES = [
    ("download", [], "download"), ("prepare", [], "prepare"), ("segment", [], "segment"), ("encode", [], "encode"),
    ("train_taggers", ["--name", "intent"], "train_taggers"), ("tag", [], "tag"), ("tag_frames", [], "encode"),
    ("retrieve", [], "retrieve"), ("train_diffusion", [], "model"), ("sample", [], "sample"), ("bench", [], "bench"),
    ("score", [], "score"), ("respond", ["hello"], "sample"), ("ablations", ["queue", "--dry-run"], "ablations"),
]


def run_stage(module: str, args: list[str], params: dict, tmp_path):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params))
    app = importlib.import_module(f"stages.{module}").app
    return CliRunner().invoke(app, [*args, "--params", str(path)])


@pytest.mark.parametrize("module,args,name", STAGES, ids=[s[0] for s in STAGES])
def test_a_typo_in_the_section_a_stage_reads_is_one_line(module, args, name, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params[name]["batch_szie"] = 8
    result = run_stage(module, args, params, tmp_path)
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: params.yaml: unknown key `{name}.batch_szie`"), lines


@pytest.mark.parametrize("module,args,name", STAGES[:4], ids=[s[0] for s in STAGES[:4]])
def test_a_wrong_type_names_the_key_and_the_expected_type(module, args, name, tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    key = next(iter(params[name]))
    params[name][key] = [1, 2]
    result = run_stage(module, args, params, tmp_path)
    assert result.exit_code == 1 and f"`{name}.{key}` is [1, 2], expected" in result.output, result.output


def test_types_by_hand():
    from dataclasses import dataclass
    from typing import Literal

    @dataclass(frozen=True)
    class Spec:
        n: int
        x: float
        mode: Literal["a", None]
        grid: list[float]
        limit: int | None = None

    assert check({"n": 1, "x": 2, "mode": None, "grid": [1, 0.5]}, Spec, "s", defaults=True).x == 2
    assert not conforms(True, int) and not conforms(1.5, int) and conforms(3, float) and not conforms("3", float)
    assert type_name(int | None) == "int | null" and type_name(Literal["a", None]) == "one of 'a', null"
    with pytest.raises(PipelineError, match=r"missing key `s.grid` \(list of float\)"):
        check({"n": 1, "x": 2, "mode": "a"}, Spec, "s")
    with pytest.raises(PipelineError, match=r"missing key `s.limit`"):
        check({"n": 1, "x": 2, "mode": "a", "grid": []}, Spec, "s")  # defaults count only where allowed
    with pytest.raises(PipelineError, match=r"has no top-level `seed` \(int\)"):
        value({}, "seed", int)


@pytest.mark.parametrize("profile", sorted((ROOT / "profiles").glob("*.yaml")), ids=lambda p: p.stem)
def test_every_profile_overrides_known_keys_with_valid_values(profile):
    """A profile is section overrides of params.yaml: each key must exist there and the merged section must still
    pass its stage's checks."""
    from pipeline.diffusion.config import ModelConfig, SampleConfig, TrainConfig
    from pipeline.params import section
    from pipeline.taggers import TaggerParams

    specs = {"model": ModelConfig, "train": TrainConfig, "sample": SampleConfig, "train_taggers": TaggerParams}
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, overrides in yaml.safe_load(profile.read_text()).items():
        unknown = set(overrides) - set(params[name])
        assert not unknown, f"{profile.name}: unknown keys {unknown} in `{name}`"
        params[name] = {**params[name], **overrides}
        section(params, name, specs[name])
