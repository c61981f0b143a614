"""Stage download: source order, sha256 pins, archives, and that a failure never leaves a partial file."""
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

import pipeline.datasets as datasets
from pipeline.datasets import ED, INVENTORY, RawFile
from pipeline.download import download_all
from pipeline.errors import PipelineError
from tests.synthetic import write_mirror

ROOT = Path(__file__).resolve().parents[1]
UNREACHABLE = "http://127.0.0.1:9/nothing-listens-here"  # the discard port: the connection is refused at once


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()) if folder.exists() else []


@pytest.fixture(scope="module")
def mirror(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mirror")
    write_mirror(root)
    return root


def test_the_synthetic_mirror_downloads_in_record_mode(mirror, tmp_path):
    manifest = download_all(INVENTORY, tmp_path, mirror, timeout_s=5, verify="record")
    members = [dest for _, dest in ED.members]
    expected = sorted([f.dest for f in INVENTORY if f != ED] + members)
    assert files_under(tmp_path) == expected  # the ED archive itself is not kept, and no temporary file is left
    assert set(manifest["files"]) == {f.dest for f in INVENTORY} | set(members)
    epitome = manifest["files"]["epitome/explorations-reddit.csv"]
    assert epitome["source"] == "mirror" and epitome["pinned"] and not epitome["verified"]
    data = (tmp_path / "epitome" / "explorations-reddit.csv").read_bytes()
    assert epitome["bytes"] == len(data) and epitome["sha256"] == hashlib.sha256(data).hexdigest()
    assert manifest["files"]["ed/valid.csv"]["archive"] == ED.dest


def test_pinned_mode_refuses_a_bad_checksum_and_leaves_nothing(mirror, tmp_path):
    with pytest.raises(PipelineError, match=r"ed/empatheticdialogues.tar.gz: sha256 \w+ of .* matches no pinned digest"):
        download_all(INVENTORY, tmp_path, mirror, timeout_s=5, verify="pinned")
    assert files_under(tmp_path) == []


def test_a_matching_pin_verifies_and_a_wrong_one_fails(tmp_path, monkeypatch):
    (tmp_path / "mirror").mkdir()
    (tmp_path / "mirror" / "a.txt").write_text("hello\n")
    digest = hashlib.sha256(b"hello\n").hexdigest()
    file = RawFile("x/a.txt", "a.txt", UNREACHABLE)
    monkeypatch.setitem(datasets.PINS, "x/a.txt", ("0" * 64, digest))
    manifest = download_all([file], tmp_path / "out", tmp_path / "mirror", timeout_s=5)
    assert manifest["files"]["x/a.txt"] | {"from": None} == {
        "source": "mirror", "from": None, "bytes": 6, "sha256": digest, "pinned": True, "verified": True}
    monkeypatch.setitem(datasets.PINS, "x/a.txt", ("0" * 64,))
    with pytest.raises(PipelineError, match="matches no pinned digest"):
        download_all([file], tmp_path / "out2", tmp_path / "mirror", timeout_s=5)
    assert files_under(tmp_path / "out2") == []


def test_no_reachable_source_names_both_and_leaves_nothing(tmp_path):
    file = RawFile("x/a.txt", "a.txt", UNREACHABLE)
    with pytest.raises(PipelineError) as err:
        download_all([file], tmp_path / "out", tmp_path / "no-mirror", timeout_s=5)
    message = str(err.value)
    assert "\n" not in message and message.startswith("no source reachable for x/a.txt")
    assert str(tmp_path / "no-mirror" / "a.txt") in message and UNREACHABLE in message
    assert files_under(tmp_path / "out") == []


def test_the_url_is_tried_when_the_mirror_lacks_the_file(tmp_path):
    (tmp_path / "remote.txt").write_text("from afar\n")
    file = RawFile("x/a.txt", "a.txt", (tmp_path / "remote.txt").as_uri())
    manifest = download_all([file], tmp_path / "out", tmp_path / "no-mirror", timeout_s=5)
    assert manifest["files"]["x/a.txt"]["source"] == "url" and not manifest["files"]["x/a.txt"]["pinned"]
    assert (tmp_path / "out" / "x" / "a.txt").read_text() == "from afar\n"


def test_a_truncated_archive_is_a_one_line_error(mirror, tmp_path):
    data = (mirror / ED.mirror).read_bytes()
    (tmp_path / "mirror" / Path(ED.mirror).parent).mkdir(parents=True)
    (tmp_path / "mirror" / ED.mirror).write_bytes(data[: len(data) // 2])
    with pytest.raises(PipelineError, match="ed/empatheticdialogues.tar.gz is truncated or not a .tar.gz"):
        download_all([ED], tmp_path / "out", tmp_path / "mirror", timeout_s=5, verify="record")
    assert files_under(tmp_path / "out") == []


def test_an_archive_without_a_listed_member_is_an_error(mirror, tmp_path):
    renamed = RawFile(ED.dest, ED.mirror, UNREACHABLE, members=(("empatheticdialogues/dev.csv", "ed/dev.csv"),))
    with pytest.raises(PipelineError, match="has no member empatheticdialogues/dev.csv"):
        download_all([renamed], tmp_path / "out", mirror, timeout_s=5, verify="record")
    assert files_under(tmp_path / "out") == []


def test_the_stage_prints_one_error_line_and_writes_no_manifest(mirror, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(json.dumps({"download": {"mirror": str(mirror), "timeout_s": 5, "verify": "pinned"}}))
    run = subprocess.run([sys.executable, "-m", "stages.download", "--out", str(tmp_path / "raw"), "--params", str(params)],
                         cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 1
    assert run.stderr.strip().splitlines()[-1].startswith("error: ed/empatheticdialogues.tar.gz: sha256")
    assert not (tmp_path / "raw" / "manifest.json").exists()
