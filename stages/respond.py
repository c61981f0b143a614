"""respond: answer your own dialogue contexts with k controlled empathetic responses (not a DVC stage; see docs/respond.md).

    python -m stages.respond "I caught my boyfriend texting his ex."
    python -m stages.respond --file dialogues.txt --json          # one dialogue per line, turns separated by "||"
    echo "I failed my exam. || Oh no! || I studied so hard." | python -m stages.respond --cm exploration --intent questioning
"""
import dataclasses
import json
import sys
import time

import typer

from pipeline.cli import guard
from pipeline.errors import PipelineError
from pipeline.diffusion.config import RERANKS, SampleConfig
from pipeline.params import load_params, section, value
from pipeline.progress import log
from pipeline.respond import Overrides, Responder, read_contexts, record, show
from pipeline.retrieval import RetrieveParams
from pipeline.tagging import TagParams

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(context: str = typer.Argument(None, help='One dialogue, turns separated by "||" (default: read stdin).'),
         file: str = typer.Option(None, help='Text file, one dialogue per line ("-" = stdin).'),
         k: int = typer.Option(None, help="Responses per context (default: retrieve.k of params.yaml)."),
         cm: list[str] = typer.Option([], help="Communication mechanisms to use instead of the retrieved ones: "
                                                "er|emotional_reaction, ip|interpretation, ex|exploration, none."),
         intent: str = typer.Option(None, help="Intent(s) per sentence, comma-separated; the last one repeats."),
         frames: str = typer.Option(None, help="SF tokens, comma-separated: one word each of a new one-sentence response."),
         json_lines: bool = typer.Option(False, "--json", help="Print JSON lines instead of a table."),
         init: str = typer.Option("noise", help="noise | candidate: start from noise, or edit each candidate's own "
                                                "response (retrieve-and-edit)."),
         strength: float = typer.Option(None, help="With --init candidate: how much to change, in (0, 1] "
                                                   "(default: sample.edit_strength)."),
         samples: int = typer.Option(None, help="Draws per response, reranked (default: sample.num_samples)."),
         rerank: str = typer.Option(None, help=f"{' | '.join(RERANKS)}: which draw to keep (default: sample.rerank)."),
         one: bool = typer.Option(False, "--one", help="One response per context, kept among the draws of all its "
                                                       "candidates, as stage sample keeps one per example (default k: "
                                                       "sample.candidates, with --init candidate edit_candidates)."),
         index: str = "data/index", taggers: str = "models/taggers", model: str = "models/diffusion",
         params: str = "params.yaml") -> None:
    if init not in ("noise", "candidate"):
        raise PipelineError(f"--init {init}: use noise or candidate")
    if init == "candidate" and frames:
        raise PipelineError("--init candidate edits the candidate's own words: it cannot be combined with --frames")
    p = load_params(params)
    sampling = section(p, "sample", SampleConfig)
    sampling = sampling.for_edit() if init == "candidate" else sampling  # the settings of stage sample@edit
    options = {"num_samples": samples, "rerank": rerank, "edit_strength": strength}
    sampling = dataclasses.replace(sampling, **{name: v for name, v in options.items() if v is not None})
    retrieve_k = section(p, "retrieve", RetrieveParams).k
    k = (sampling.candidates_of(retrieve_k) if one else retrieve_k) if k is None else k
    if k < 1:
        raise PipelineError(f"--k {k}: ask for at least one response")
    dialogues = read_contexts(context, file, sys.stdin.buffer)
    seed, gamma = value(p, "seed", int), float(value(p, "gamma", float))
    responder = Responder.load(index, taggers, model, sampling, seed, edit=init == "candidate",
                               cm_threshold=section(p, "tag", TagParams).cm_threshold)
    overrides = Overrides.parse(cm, intent, frames, responder.known_frames())
    for turns in dialogues:
        start = time.perf_counter()
        results = responder.respond(turns, k, gamma, overrides, one)
        log(f"[respond] {len(results)} responses in {time.perf_counter() - start:.2f}s")
        if json_lines:
            for res in results:
                print(json.dumps(record(turns, res), ensure_ascii=False))
        else:
            print(show(turns, results) + "\n")


if __name__ == "__main__":
    app()
