"""The demo server: one `Service` over the `Responder` that `respond` uses, reached by a JSON API and a Gradio page.

- `RespondRequest.parse`: a JSON object -> a checked request (the options of `respond`), or one PipelineError line.
- `Service`: the loaded Responder, answering one request at a time (the model is not shared between threads); at
  most `max_pending` API requests wait or run, and one more is refused (`Busy`) instead of piling up. The rerank rules'
  models load on their first use and stay loaded. It keeps the last requests it received (`received`).
- `build_app`: a FastAPI app with POST /api/respond (JSON in, `respond --json` records out; a bad request gets one
  message and a 4xx status, a full queue a 503) and the Gradio page (`pipeline/demo_page.py`) mounted at /.
"""
import dataclasses
import json
import threading
import time
import typing
from collections import deque
from contextlib import contextmanager
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from pipeline.decoder import Decoder, SteeredSample
from pipeline.diffusion.config import SampleConfig
from pipeline.errors import PipelineError
from pipeline.judges import load_judges
from pipeline.params import conforms, type_name
from pipeline.respond import TURN_DELIMITER, Options, Responder, record
from pipeline.rerank import Judges

MAX_TURNS = 50  # turns of one dialogue


class Busy(Exception):
    """The service already holds its limit of waiting and running requests."""


@dataclass(frozen=True, kw_only=True)
class RespondRequest(Options):
    """What `respond` takes for one dialogue: the turns, oldest first, and its options (pipeline.respond.Options,
    under the names of respond's flags without the dashes)."""

    dialogue: tuple[str, ...]

    @classmethod
    def parse(cls, payload) -> "RespondRequest":
        """A decoded JSON object -> a request; one PipelineError line naming the first problem."""
        fields = {f.name: f for f in dataclasses.fields(cls)}
        if not isinstance(payload, dict):
            raise PipelineError('the request must be a JSON object such as {"dialogue": ["I lost my job."]}')
        unknown = sorted(set(payload) - set(fields))
        if unknown:
            raise PipelineError(f"unknown field {unknown[0]!r}; the fields: {', '.join(fields)}")
        dialogue = payload.get("dialogue")
        if isinstance(dialogue, str):
            dialogue = dialogue.split(TURN_DELIMITER)
        if not isinstance(dialogue, list) or not all(isinstance(t, str) for t in dialogue):
            raise PipelineError("`dialogue` must be a list of turns (strings), oldest first, or one string with turns "
                                f"separated by {TURN_DELIMITER!r}")
        turns = [t.strip() for t in dialogue if t.strip()]
        if not turns:
            raise PipelineError("empty dialogue: give at least one non-empty turn")
        if len(turns) > MAX_TURNS:
            raise PipelineError(f"{len(turns)} turns: at most {MAX_TURNS}")
        cm = payload.get("cm")
        cm = [] if cm is None else [cm] if isinstance(cm, str) else cm
        if not isinstance(cm, list) or not all(isinstance(c, str) for c in cm):
            raise PipelineError('`cm` must be a list of mechanism names, e.g. ["exploration"]')
        hints = typing.get_type_hints(cls)
        options = {n: v for n, v in payload.items() if n not in ("dialogue", "cm") and v is not None}
        for name, v in options.items():
            if not conforms(v, hints[name]):
                raise PipelineError(f"`{name}` is {v!r}: expected {type_name(hints[name])}")
        for text in (*turns, *cm, *(v for v in options.values() if isinstance(v, str))):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError:
                raise PipelineError(f"{text[:40]!r} is not valid Unicode text (a lone surrogate): send UTF-8") from None
        request = cls(dialogue=tuple(turns), cm=tuple(cm), **options)
        request.check()
        if request.k is not None and not 1 <= request.k <= 10:
            raise PipelineError(f"`k` is {request.k}: ask for 1 to 10 responses")
        if request.samples is not None and not 1 <= request.samples <= 16:
            raise PipelineError(f"`samples` is {request.samples}: 1 to 16 draws")
        return request


class Unavailable(Exception):
    """The server lacks what a request needs (a rerank rule's models): not the client's fault."""


class Service:
    """responder: the loaded artifacts (`Responder.load`); sampling: the default decoding (params.yaml `sample`);
    k, gamma: retrieve.k and gamma; taggers_dir, cm_threshold: what the rerank rules' judges load from;
    max_pending: API requests that may wait or run at once (one more is refused with Busy); the page's requests wait
    in Gradio's own queue of the same size."""

    def __init__(self, responder: Responder, sampling: SampleConfig, k: int, gamma: float, taggers_dir,
                 cm_threshold: float, max_pending: int = 16, history: int = 100):
        self.responder, self.sampling, self.k, self.gamma = responder, sampling, k, gamma
        self.taggers_dir, self.cm_threshold, self.max_pending = taggers_dir, cm_threshold, max_pending
        self.judges = {sampling.rerank: responder.decoder.judges}
        self.received: deque[RespondRequest] = deque(maxlen=history)
        self.answered = 0  # requests answered so far
        self._model = threading.Lock()  # one request at a time through the model
        self._count = threading.Lock()
        self._pending = 0

    @contextmanager
    def admitted(self, request: RespondRequest):
        """Count `request` among the pending ones while the block runs, or raise Busy when max_pending already are."""
        with self._count:
            if self._pending >= self.max_pending:
                raise Busy(f"the server is busy: {self._pending} requests are waiting or running (the limit, "
                           "max_pending); retry in a few seconds")
            self._pending += 1
            self.received.append(request)
        try:
            yield
        finally:
            with self._count:
                self._pending -= 1

    def answer(self, request: RespondRequest) -> dict:
        """-> {"responses": records as `respond --json` prints them, "seconds": the time the answer took}; waits for
        the model. PipelineError: a request `respond` would refuse; Unavailable: the server lacks a model."""
        with self._model:
            start = time.perf_counter()
            records = self._answer(request)
            self.answered += 1
            return {"responses": records, "seconds": round(time.perf_counter() - start, 3)}

    def respond(self, request: RespondRequest) -> dict:
        """`answer` once admitted (Busy when the queue is full): what a synchronous caller (the page) uses."""
        with self.admitted(request):
            return self.answer(request)

    def judges_for(self, rule: str) -> Judges:
        """The models `rule` reads, loaded on first use."""
        if rule not in self.judges:
            try:
                self.judges[rule] = load_judges(rule, self.taggers_dir, self.cm_threshold)
            except PipelineError as err:
                raise Unavailable(f"this server cannot rerank by {rule}: {err}") from None
        return self.judges[rule]

    def _answer(self, request: RespondRequest) -> list[dict]:
        sampling = request.decoding(self.sampling)
        decoder = Decoder(self.responder.decoder.model, self.responder.decoder.vocab, sampling,
                          self.judges_for(sampling.rerank), self.responder.decoder.steered)
        responder = dataclasses.replace(self.responder, decoder=decoder, edit=request.edit)
        turns = list(request.dialogue)
        results = responder.respond(turns, request.responses(sampling, self.k), self.gamma,
                                    request.overrides(self.responder.known_frames), request.one,
                                    retrieval=not request.no_retrieval)
        return [record(turns, res) for res in results]


def build_app(service: Service, max_body_bytes: int = 64_000, page: Callable | None = None):
    """The FastAPI app: POST /api/respond and, with page (service -> gr.Blocks), the Gradio page at /.

    Statuses: 200 {"responses", "seconds"}; 400 {"error"} for a body that is not UTF-8 JSON or a request `respond`
    would refuse (the same one-line messages); 413 for a body over max_body_bytes (not read past it); 503 when the
    queue is full (with Retry-After) or the server lacks a rerank rule's models. Requests are admitted on the event
    loop, so one refused never takes a worker thread; those admitted wait for the model in the threadpool (40 threads:
    keep max_pending well under it)."""
    from fastapi import FastAPI, Request
    from fastapi.concurrency import run_in_threadpool
    from fastapi.responses import JSONResponse

    app = FastAPI(title="DiffusEmp demo")

    def error(status: int, message: str) -> JSONResponse:
        return JSONResponse({"error": message}, status_code=status)

    async def read_body(http: Request) -> bytes | None:
        """The body, or None as soon as it is known to exceed max_body_bytes (it is not read further)."""
        declared = http.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > max_body_bytes:
            return None
        body = bytearray()
        async for chunk in http.stream():
            body += chunk
            if len(body) > max_body_bytes:
                return None
        return bytes(body)

    @app.post("/api/respond")
    async def respond(http: Request):
        body = await read_body(http)
        if body is None:
            return error(413, f"the request is over the limit of {max_body_bytes:,} bytes (a dialogue of a few turns "
                              "fits easily): shorten the context")
        try:
            payload = json.loads(body.decode("utf-8"))
        except UnicodeDecodeError as err:
            return error(400, f"the request body is not valid UTF-8 (byte {err.start}): send UTF-8 JSON")
        except json.JSONDecodeError as err:
            return error(400, f"the request body is not JSON ({err.msg} at character {err.pos}): send an object "
                              'such as {"dialogue": ["I lost my job."]}')
        except (ValueError, RecursionError) as err:  # an integer of over 4,300 digits, nesting too deep
            return error(400, f"the request body is not JSON this server reads ({str(err)[:80]})")
        try:
            request = RespondRequest.parse(payload)
            with service.admitted(request):  # on the event loop: a full queue is refused before taking a thread
                return await run_in_threadpool(service.answer, request)
        except PipelineError as err:
            return error(400, str(err))
        except Busy as err:
            return JSONResponse({"error": str(err)}, status_code=503, headers={"Retry-After": "5"})
        except Unavailable as err:
            return error(503, str(err))

    if page is not None:
        import gradio as gr

        app = gr.mount_gradio_app(app, page(service), path="/", ssr_mode=False, footer_links=[],
                                  theme=gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                                                          font_mono=["ui-monospace", "monospace"]))
    return app


def load_service(index, taggers, model, params: Mapping, seed: int, max_pending: int = 16) -> Service:
    """The Service over the artifacts of `make repro` and the params.yaml sections `sample`, `retrieve`, `tag`."""
    from pipeline.params import section, value
    from pipeline.retrieval import RetrieveParams
    from pipeline.tagging import TagParams

    sampling = section(params, "sample", SampleConfig)
    threshold = section(params, "tag", TagParams).cm_threshold
    responder = Responder.load(index, taggers, model, sampling, seed, cm_threshold=threshold,
                               steered=section(params, "steered_sample", SteeredSample))
    return Service(responder, sampling, section(params, "retrieve", RetrieveParams).k,
                   float(value(params, "gamma", float)), Path(taggers), threshold, max_pending)
