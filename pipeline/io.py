"""Atomic writers (temp file in the same folder + rename) and checked readers for every artifact kind."""
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.errors import PipelineError, missing_artifact

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path, suffix: str = ""):
    """Yield a temporary path beside `path`; rename it onto `path` only if the block finishes without error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix + ".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp creates 0600; give the file the mode a plain open() would
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def write_json(path, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False) + "\n")


def read_json(path, stage: str | None = None):
    path = Path(path)
    if not path.exists():
        raise missing_artifact(path, stage) if stage else PipelineError(f"{path} not found")
    return json.loads(path.read_text())


def write_table(path, table: pa.Table, schema: pa.Schema) -> None:
    """Write `table` as Parquet after casting it to the declared `schema` (column order and types)."""
    try:
        table = table.select(schema.names).cast(schema)
    except (KeyError, pa.ArrowInvalid, pa.ArrowTypeError, ValueError) as err:
        raise PipelineError(f"{path}: table does not match its declared schema: {err}") from None
    with atomic_path(path, ".parquet") as tmp:
        pq.write_table(table, tmp)


def write_frame(path, df, schema: pa.Schema) -> None:
    """Write a pandas DataFrame as Parquet with the declared `schema`."""
    write_table(path, pa.Table.from_pandas(df[schema.names], preserve_index=False), schema)


def read_table(path, schema: pa.Schema | None = None, stage: str | None = None) -> pa.Table:
    """Read a Parquet artifact; with `schema`, check that it holds the declared columns and types."""
    path = Path(path)
    if not path.exists():
        raise missing_artifact(path, stage) if stage else PipelineError(f"{path} not found")
    table = pq.read_table(path)
    if schema is not None:
        missing = [f.name for f in schema if f.name not in table.schema.names]
        if missing:
            raise PipelineError(f"{path} lacks columns {missing}: rebuild it with `dvc repro`")
        table = table.select(schema.names).cast(schema)
    return table


def read_frame(path, schema: pa.Schema | None = None, stage: str | None = None):
    return read_table(path, schema, stage).to_pandas()


def save_npy(path, array: np.ndarray) -> None:
    # Through a file object: given a name not ending in .npy, np.save would write to name + ".npy" instead.
    with atomic_path(path, ".npy") as tmp, open(tmp, "wb") as f:
        np.save(f, array)


def load_npy(path, stage: str | None = None, mmap: bool = False) -> np.ndarray:
    path = Path(path)
    if not path.exists():
        raise missing_artifact(path, stage) if stage else PipelineError(f"{path} not found")
    return np.load(path, mmap_mode="r" if mmap else None)
