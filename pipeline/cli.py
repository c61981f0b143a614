"""What every stage CLI shares: offline model hubs and one-line errors instead of tracebacks."""
import functools
import os
import sys

import typer

from pipeline.errors import PipelineError

# Nothing may reach a model hub: every model comes from a locally installed package.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def guard(fn):
    """Turn a PipelineError raised inside a stage into `error: <message>` on stderr and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except PipelineError as err:
            print(f"error: {err}", file=sys.stderr)
            raise typer.Exit(1) from None

    return wrapper
