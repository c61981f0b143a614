"""respond: answer your own dialogue contexts with k controlled empathetic responses (not a DVC stage; see docs/respond.md).

    python -m stages.respond "I caught my boyfriend texting his ex."
    python -m stages.respond --file dialogues.txt --json          # one dialogue per line, turns separated by "||"
    echo "I failed my exam. || Oh no! || I studied so hard." | python -m stages.respond --cm exploration --intent questioning
    python -m stages.respond --no-retrieval --cm exploration "I lost my job."   # hand-set levels alone, no candidate
"""
import json
import sys
import time

import typer

from pipeline.cli import guard
from pipeline.errors import PipelineError
from pipeline.decoder import SteeredSample
from pipeline.diffusion.config import RERANKS, SampleConfig
from pipeline.params import load_params, section, value
from pipeline.progress import log
from pipeline.respond import Options, Responder, read_contexts, record, show
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
         intent: str = typer.Option(None, help="Intent of each sentence, comma-separated (one sentence per intent)."),
         frames: str = typer.Option(None, help="SF tokens, comma-separated: one word each of a new one-sentence response."),
         keep_skeleton: bool = typer.Option(False, "--keep-skeleton", help="Keep the candidate's sentence and word "
                                            "skeleton under hand-set levels (default: a hand-set level frees the "
                                            "finer ones); intents then map onto its sentences, the last repeats."),
         no_retrieval: bool = typer.Option(False, "--no-retrieval", help="No candidate: the hand-set levels alone "
                                           "steer; the length comes from training responses of that CM and intent."),
         guidance: float = typer.Option(None, help="Classifier-free guidance weight on the given levels "
                                                   "(default: sample.guidance; 1 = none)."),
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
    asked = Options(k=k, cm=tuple(cm), intents=intent, frames=frames, init=init, strength=strength, samples=samples,
                    rerank=rerank, one=one, guidance=guidance, no_retrieval=no_retrieval, keep_skeleton=keep_skeleton)
    asked.check(spell=lambda name: "--" + name.replace("_", "-"))
    p = load_params(params)
    sampling = asked.decoding(section(p, "sample", SampleConfig))
    k = asked.responses(sampling, section(p, "retrieve", RetrieveParams).k)
    if k < 1:
        raise PipelineError(f"--k {k}: ask for at least one response")
    dialogues = read_contexts(context, file, sys.stdin.buffer)
    seed, gamma = value(p, "seed", int), float(value(p, "gamma", float))
    responder = Responder.load(index, taggers, model, sampling, seed, edit=asked.edit,
                               cm_threshold=section(p, "tag", TagParams).cm_threshold,
                               steered=section(p, "steered_sample", SteeredSample))
    overrides = asked.overrides(responder.known_frames)
    for turns in dialogues:
        start = time.perf_counter()
        results = responder.respond(turns, k, gamma, overrides, one, retrieval=not no_retrieval)
        log(f"[respond] {len(results)} responses in {time.perf_counter() - start:.2f}s")
        if json_lines:
            for res in results:
                print(json.dumps(record(turns, res), ensure_ascii=False))
        else:
            print(show(turns, results) + "\n")


if __name__ == "__main__":
    app()
