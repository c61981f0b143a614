"""Stage download: the four public datasets (mirror first, then the public URLs) -> data/raw/ + data/raw/manifest.json."""
from pathlib import Path

import typer

from pipeline.cli import guard
from pipeline.datasets import INVENTORY
from pipeline.download import DownloadParams, download_all
from pipeline.io import write_json
from pipeline.params import load_params, section
from pipeline.progress import log

app = typer.Typer(add_completion=False)


@app.command()
@guard
def main(out: str = "data/raw", params: str = "params.yaml") -> None:
    cfg = section(load_params(params), "download", DownloadParams)
    manifest = download_all(INVENTORY, out, cfg.mirror, cfg.timeout_s, cfg.verify)
    write_json(Path(out) / "manifest.json", manifest)
    files = manifest["files"].values()
    log(f"download: {len(files)} files in {out}, {sum(e.get('verified', False) for e in files)} verified against pins")


if __name__ == "__main__":
    app()
