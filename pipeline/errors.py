"""Errors a user can act on. Stages print them as one line (see `pipeline.cli.guard`)."""


class PipelineError(Exception):
    """A problem with inputs, sources or artifacts, with a message that says what is wrong and how to fix it."""


def missing_artifact(path, stage: str) -> PipelineError:
    return PipelineError(f"{path} not found: build it with `dvc repro {stage}`")
