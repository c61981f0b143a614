"""Decoding speed of every system side by side: the same test rows, one process, one machine (a benchmark: figures,
never asserts). diffusemp is timed as stage bench times its default decoding (`decoding_throughput`: every draw of
every candidate and the rerank); each baseline by its own decoding (`BaselineDecoder`). No warm-up call for any."""
from collections.abc import Callable, Mapping, Sequence

import torch

from pipeline.experiments.bench import decoding_throughput, machine, timed


def decode_rate(decode: Callable[[Sequence[Mapping]], list[str]], rows: Sequence[Mapping]) -> dict:
    """Responses/s of one call of decode over rows."""
    seconds = timed(lambda: decode(rows), torch.device("cpu"), 1, warmup=False)
    return {"responses": len(rows), "seconds": round(seconds, 2), "responses_per_s": round(len(rows) / seconds, 3)}


def speed_table(diffusemp, group: int, baselines: Mapping[str, Callable[[Sequence[Mapping]], list[str]]],
                rows: Sequence[Mapping]) -> dict:
    """diffusemp: its pipeline.decoder.Decoder (the `sample` settings, the judges of its rerank); group: candidates
    per example; baselines: name -> rows -> texts; rows: control rows with `context` -> metrics/bench_baselines.json."""
    systems = {"diffusemp": decoding_throughput(diffusemp, rows, group)}
    systems.update({name: decode_rate(decode, rows) for name, decode in baselines.items()})
    return {"machine": machine(), "systems": systems}
