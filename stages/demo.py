"""demo: a browser page and a JSON API over `respond` (not a DVC stage; `make demo` after `make repro`; docs/demo.md).

    python -m stages.demo                       # http://127.0.0.1:7860 (the page) and POST /api/respond (JSON)
    curl -s localhost:7860/api/respond -H 'content-type: application/json' -d '{"dialogue": ["I lost my job."]}'

Everything loads once at start (retrieval index, emotion tagger, diffusion model, the default rerank rule's models);
requests are answered one at a time, and at most --max-pending API requests wait or run (one more gets a 503).
"""
import typer

from pipeline.cli import guard
from pipeline.demo_page import build_page
from pipeline.params import load_params, value
from pipeline.progress import log
from pipeline.serve import build_app, load_service

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(host: str = typer.Option("127.0.0.1", help="Address to listen on (127.0.0.1: this machine only)."),
         port: int = 7860, max_pending: int = typer.Option(16, min=1, max=32,
                                                           help="API requests that may wait or run at once."),
         index: str = "data/index", taggers: str = "models/taggers", model: str = "models/diffusion",
         params: str = "params.yaml") -> None:
    import uvicorn

    p = load_params(params)
    service = load_service(index, taggers, model, p, value(p, "seed", int), max_pending)
    log(f"[demo] serving http://{host}:{port} (page) and POST /api/respond (JSON); Ctrl-C stops")
    uvicorn.run(build_app(service, page=build_page), host=host, port=port, log_level="warning")


if __name__ == "__main__":
    app()
