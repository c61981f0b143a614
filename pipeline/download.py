"""Fetch the raw datasets: each file from its first reachable source (mirror, then URL), verified, renamed into place.

No partial file is ever left under the output folder: a file is written to a temporary name beside its destination,
its sha256 is checked, and only then is it renamed (`pipeline.io.atomic_path`). An archive is fetched to a temporary
folder, checked the same way, and only its listed members are extracted (never by the names the archive gives them).
"""
import gzip
import hashlib
import http.client
import shutil
import tarfile
import tempfile
import urllib.request
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pipeline.datasets import RawFile
from pipeline.errors import PipelineError
from pipeline.io import atomic_path
from pipeline.progress import progress

# `pinned`: a pinned file must match one of its digests (the default: real downloads are verified).
# `record`: any content is accepted and its digest recorded (for a synthetic mirror, whose digests differ).
VERIFY_MODES = ("pinned", "record")


@dataclass(frozen=True)
class DownloadParams:
    """params.yaml `download`: sources tried in order (mirror folder, then each file's URL) and how files are checked."""

    mirror: str
    timeout_s: float
    verify: Literal["pinned", "record"]


def download_all(files: Sequence[RawFile], out_dir, mirror, timeout_s: float, verify: str = "pinned") -> dict:
    """Fetch every file into `out_dir`; return the manifest: {"verify": mode, "files": {dest: entry}}.

    An entry gives the source used ("mirror" or "url"), where it came from, bytes, sha256, whether the file is pinned and
    whether its digest matched a pin. Each extracted archive member gets its own entry naming the archive it came from.
    """
    if verify not in VERIFY_MODES:
        raise PipelineError(f"download.verify is {verify!r}: use one of {', '.join(VERIFY_MODES)}")
    out_dir, mirror = Path(out_dir), Path(mirror)
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = {}
    for file in progress(files, desc="download"):
        if file.members:
            with tempfile.TemporaryDirectory(dir=out_dir, prefix=".download-") as tmp_dir:
                archive = Path(tmp_dir) / Path(file.dest).name
                entries[file.dest] = fetch_verified(file, mirror, timeout_s, verify, archive)
                entries |= extract_members(file, archive, out_dir)
        else:
            with atomic_path(out_dir / file.dest) as tmp:
                entries[file.dest] = fetch_verified(file, mirror, timeout_s, verify, tmp)
    return {"verify": verify, "files": entries}


def fetch_verified(file: RawFile, mirror: Path, timeout_s: float, verify: str, path: Path) -> dict:
    """Write `file` to `path` from its first reachable source and check its digest; return its manifest entry."""
    source, location = fetch(file, mirror, timeout_s, path)
    digest = sha256_of(path)
    pinned, verified = bool(file.sha256), digest in file.sha256
    if verify == "pinned" and pinned and not verified:
        raise PipelineError(
            f"{file.dest}: sha256 {digest} of {location} matches no pinned digest ({', '.join(file.sha256)}): replace the "
            f"file at its source, or add the digest to pipeline/datasets.py if you trust it (`download.verify: record` "
            f"skips the check, e.g. for a synthetic mirror)")
    return {"source": source, "from": location, "bytes": path.stat().st_size, "sha256": digest,
            "pinned": pinned, "verified": verified}


def fetch(file: RawFile, mirror: Path, timeout_s: float, path: Path) -> tuple[str, str]:
    """Copy `file` into `path` from the mirror or else the URL; return (source kind, location). Raise if neither works."""
    local = mirror / file.mirror
    if local.is_file():
        shutil.copyfile(local, path)
        return "mirror", str(local)
    try:
        fetch_url(file.url, path, timeout_s)
        return "url", file.url
    except (OSError, http.client.HTTPException) as err:  # URLError, timeouts and refused connections are OSErrors
        reason = getattr(err, "reason", err)
    raise PipelineError(
        f"no source reachable for {file.dest}: tried {local} (not found), {file.url} ({reason}); "
        f"put the file at {local} or check the network")


def fetch_url(url: str, path: Path, timeout_s: float) -> None:
    """Stream `url` into `path`; a body shorter than its Content-Length is an error, not a file."""
    with urllib.request.urlopen(url, timeout=timeout_s) as response, open(path, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)
        expected = response.headers.get("Content-Length")
    got = path.stat().st_size
    if expected is not None and got != int(expected):
        raise OSError(f"truncated: got {got} of {expected} bytes")


def extract_members(file: RawFile, archive: Path, out_dir: Path) -> dict:
    """Extract the listed members of a verified .tar.gz `archive`, each atomically; return their manifest entries."""
    entries = {}
    try:
        with tarfile.open(archive, "r:gz") as tar:
            tar.getmembers()  # read the whole archive first: a truncated one fails here, before any member is written
            for name, dest in file.members:
                try:
                    info = tar.getmember(name)
                except KeyError:
                    raise PipelineError(f"{file.dest} has no member {name}: is it the official release?") from None
                if not info.isfile():
                    raise PipelineError(f"{file.dest}: member {name} is not a regular file: is it the official release?")
                with atomic_path(out_dir / dest) as tmp, tar.extractfile(info) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out, length=1 << 20)
                entries[dest] = {"archive": file.dest, "member": name, "bytes": (out_dir / dest).stat().st_size,
                                 "sha256": sha256_of(out_dir / dest)}
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as err:
        raise PipelineError(
            f"{file.dest} is truncated or not a .tar.gz ({err}): replace the file at its source and rerun") from None
    return entries


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
