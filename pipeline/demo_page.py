"""The Gradio page of the demo (`make demo`): a dialogue in, the k retrieved candidates with their control sequences and
the generated response of each out, through the same `Service` as the JSON API (pipeline/serve.py).

Every widget is an option of `respond` (docs/respond.md); the page builds the same JSON object a program would POST
to /api/respond (`request_payload`), so the page and the API cannot drift apart.
"""
import html

import gradio as gr

from pipeline.diffusion.config import RERANKS
from pipeline.errors import PipelineError
from pipeline.labels import INTENTS, MECHANISM_NAMES
from pipeline.serve import Busy, RespondRequest, Service, Unavailable

EXAMPLES = [
    "I caught my boyfriend texting his ex.",
    "I failed my exam.\nOh no! What happened?\nI studied so hard and still failed.",
    "I finally got the job I wanted!",
    "My dog died last week.\nOh no, I am so sorry.\nThanks, I miss him a lot.",
]
CM_CHOICES = [name.lower() for name in MECHANISM_NAMES.values()] + ["none"]


def request_payload(dialogue: str, cm: list[str], intents: str, frames: str, keep_skeleton: bool, no_retrieval: bool,
                    guidance: float, init: str, strength: float, samples: float, rerank: str, k: float,
                    one: bool) -> dict:
    """The widgets' values -> the JSON object of /api/respond (one turn per line of `dialogue`)."""
    return {"dialogue": dialogue.splitlines(), "cm": list(cm), "intents": intents.strip() or None,
            "keep_skeleton": bool(keep_skeleton), "no_retrieval": bool(no_retrieval), "guidance": float(guidance),
            "frames": frames.strip() or None, "init": init,
            "strength": float(strength) if init == "candidate" else None,
            "samples": int(samples), "rerank": rerank, "k": int(k), "one": bool(one)}


def render(answer: dict, number: int) -> str:
    """The records of one answer as an HTML table: per candidate its rank and retrieval score, its own response, the
    control sequence used and the generated response; the caption numbers the answer (a new answer is a new table)."""
    def source(r: dict) -> str:
        return "no retrieval" if r["score"] is None else f"{r['score']:.3f}"

    rows = [f"<tr><td>#{r['rank'] + 1}<br><small>{source(r)}</small></td>"
            f"<td>{html.escape(r['candidate_response'])}</td>"
            f"<td><code>{html.escape(r['control_sequence']) or '(none)'}</code></td>"
            f"<td class='response'>{html.escape(r['response']) or '(empty)'}</td></tr>" for r in answer["responses"]]
    head = "<tr><th>candidate</th><th>its response</th><th>controls used</th><th>generated response</th></tr>"
    return f"<table data-answer='{number}'>{head}{''.join(rows)}</table>"


def build_page(service: Service) -> gr.Blocks:
    """The page over `service`; defaults from its params (k, draws, rerank, edit strength)."""
    s = service.sampling

    def answer(*values):
        try:
            result = service.respond(RespondRequest.parse(request_payload(*values)))
        except (PipelineError, Busy, Unavailable) as err:
            raise gr.Error(str(err)) from None
        return render(result, service.answered), f"{result['seconds']:.2f} s", result["responses"]

    with gr.Blocks(title="DiffusEmp demo") as page:
        gr.Markdown("# DiffusEmp: empathetic responses under multi-grained control\n"
                    "Type a dialogue (one turn per line, oldest first). Each of the k retrieved candidates lends its "
                    "controls (communication mechanism, intents, frames); the diffusion model writes one response per "
                    "candidate. Set a control below to replace the candidates' (docs/respond.md).")
        dialogue = gr.Textbox(label="Dialogue (one turn per line)", lines=4, elem_id="dialogue",
                              placeholder="I lost my job today.")
        gr.Examples([[e] for e in EXAMPLES], inputs=[dialogue], label="Examples")
        with gr.Accordion("Controls (empty: the candidates')", open=True):
            cm = gr.CheckboxGroup(CM_CHOICES, label="Communication mechanisms", elem_id="cm")
            intents = gr.Textbox(label=f"Intents, one per sentence, comma-separated ({', '.join(INTENTS)})",
                                 elem_id="intents")
            frames = gr.Textbox(label="SF tokens, comma-separated (a new one-sentence skeleton)", elem_id="frames")
            keep_skeleton = gr.Checkbox(False, label="Keep the candidate's sentence and word skeleton (default: a "
                                        "level you set frees the finer ones)", elem_id="keep_skeleton")
            no_retrieval = gr.Checkbox(False, label="No retrieval: only the controls set here steer",
                                       elem_id="no_retrieval")
            guidance = gr.Slider(0.0, 5.0, value=s.guidance, step=0.25, label="Guidance weight w on the given "
                                 "controls (1 = none)", elem_id="guidance")
        with gr.Accordion("Decoding", open=False):
            init = gr.Radio(["noise", "candidate"], value="noise", label="Start from", elem_id="init")
            strength = gr.Slider(0.05, 1.0, value=s.edit_strength, step=0.05, label="Edit strength (start from "
                                 "candidate)", elem_id="strength")
            samples = gr.Slider(1, 16, value=s.num_samples, step=1, label="Draws per response", elem_id="samples")
            rerank = gr.Radio(list(RERANKS), value=s.rerank, label="Keep the draw chosen by", elem_id="rerank")
            k = gr.Slider(1, 10, value=service.k, step=1, label="Candidates (k)", elem_id="k")
            one = gr.Checkbox(False, label="One response for the dialogue (kept among all candidates' draws)",
                              elem_id="one")
        submit = gr.Button("Respond", variant="primary", elem_id="submit")
        seconds = gr.Textbox(label="Time taken", elem_id="seconds", interactive=False)
        results = gr.HTML(elem_id="responses")
        with gr.Accordion("JSON (what /api/respond returns)", open=False):
            raw = gr.JSON(elem_id="json")
        submit.click(answer, [dialogue, cm, intents, frames, keep_skeleton, no_retrieval, guidance, init, strength,
                              samples, rerank, k, one],
                     [results, seconds, raw], api_visibility="private", concurrency_limit=1)
    page.queue(max_size=service.max_pending)
    return page
