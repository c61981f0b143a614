"""Read params.yaml: one section per stage plus top-level keys (seed, gamma, ...) that experiments sweep with -S."""
from pathlib import Path

import yaml

from pipeline.errors import PipelineError


def load_params(path="params.yaml") -> dict:
    path = Path(path)
    if not path.exists():
        raise PipelineError(f"{path} not found: run stages from the repository root")
    return yaml.safe_load(path.read_text()) or {}


def section(params: dict, name: str) -> dict:
    if name not in params:
        raise PipelineError(f"params.yaml has no `{name}` section")
    return params[name] or {}
