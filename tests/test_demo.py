"""The demo server (pipeline/serve.py, pipeline/demo_page.py) as a program and a person use it: the JSON API with bad
input, 20 concurrent requests and a full queue on loopback, and the page in a real headless Chromium (Debian's
chromium and chromium-driver, which `make test` installs)."""
import json
import os
import shutil
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import uvicorn

from pipeline.demo_page import build_page
from pipeline.errors import PipelineError
from pipeline.params import load_params
from pipeline.serve import RespondRequest, build_app, load_service
from tests.test_respond import K, artifacts  # noqa: F401  (the tiny index, tagger and model of the respond tests)


def option(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


@pytest.fixture(scope="module")
def service(artifacts):  # noqa: F811
    params = load_params(option(artifacts, "--params"))
    return load_service(option(artifacts, "--index"), option(artifacts, "--taggers"), option(artifacts, "--model"),
                        params, seed=0, max_pending=32)


class Server:
    """The app served by uvicorn on a free loopback port, in a thread, for the duration of a `with` block."""

    def __init__(self, app):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.url = f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "Server":
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline, "the server did not start in 60 s"
            time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.server.should_exit = True
        self.thread.join(timeout=30)


def post(url: str, body, timeout: float = 120) -> httpx.Response:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/api/respond", content=data, headers={"content-type": "application/json"},
                      timeout=timeout)


# --- the request -----------------------------------------------------------------------------------------------------
def test_a_request_is_checked_field_by_field():
    r = RespondRequest.parse({"dialogue": "I lost my job. || Oh no! ||  ", "cm": "ex", "k": 2, "strength": 1})
    assert r.dialogue == ("I lost my job.", "Oh no!") and r.cm == ("ex",) and r.k == 2 and r.strength == 1
    for payload, message in [([], "JSON object"), ({"dialogue": ["", " "]}, "empty dialogue"),
                             ({"dialogue": [3]}, "list of turns"), ({"dialogue": ["a"], "mood": 1}, "unknown field"),
                             ({"dialogue": ["a"], "k": "2"}, "`k` is '2': expected int"),
                             ({"dialogue": ["a"], "one": 1}, "expected bool"),
                             ({"dialogue": ["a"], "k": True}, "expected int"),
                             ({"dialogue": ["a"], "init": "copy"}, "one of 'noise', 'candidate'"),
                             ({"dialogue": ["a"], "rerank": "best"}, "'mbr'"), ({"dialogue": ["a"], "k": 0}, "1 to 10"),
                             ({"dialogue": ["a"], "init": "candidate", "frames": "?"}, "cannot be combined")]:
        with pytest.raises(PipelineError, match=message):
            RespondRequest.parse(payload)


# --- the API ---------------------------------------------------------------------------------------------------------
def test_api_answers_what_respond_json_prints_and_refuses_bad_input_with_4xx(service):
    with Server(build_app(service)) as server:
        ok = post(server.url, {"dialogue": ["I lost my job.", "Oh no!"], "cm": ["exploration"],
                               "intents": "questioning"})
        assert ok.status_code == 200, ok.text
        records = ok.json()["responses"]
        assert len(records) == K and ok.json()["seconds"] >= 0
        assert all(r["context"] == ["I lost my job.", "Oh no!"] and r["cm"] == {"er": False, "ip": False, "ex": True}
                   and r["intents"] == ["questioning"] and isinstance(r["response"], str) for r in records)
        assert service.received[-1].cm == ("exploration",)
        alone = post(server.url, {"dialogue": ["I lost my job."], "cm": ["er"], "no_retrieval": True, "guidance": 1})
        assert alone.status_code == 200 and all(r["score"] is None and r["given"] == ["cm"]
                                                for r in alone.json()["responses"]), alone.text
        bad = [({"dialogue": []}, 400, "empty dialogue"), ({"dialogue": ["hi"], "cm": ["empathy"]}, 400, "valid: "),
               ({"dialogue": ["hi"], "intents": "questoning"}, 400, "did you mean questioning"),
               ({"dialogue": ["word " * 200_000]}, 413, "over the limit"),
               (b'{"dialogue": ["caf\xe9"]}', 400, "not valid UTF-8"), (b"{dialogue", 400, "not JSON"),
               ({"dialogue": ["hi"], "strength": 0, "init": "candidate"}, 400, "edit_strength=0"),
               (b'{"dialogue": ["hi"], "k": ' + b"9" * 5000 + b"}", 400, "not JSON this server reads"),
               (b"[" * 60_000, 400, "not JSON this server reads"),
               (b'{"dialogue": ["a\\ud800"]}', 400, "lone surrogate"), ({"dialogue": ["hi"], "cm": False}, 400, "list"),
               ({"dialogue": ["hi"], "frames": "", "init": "candidate"}, 400, "cannot be combined"),
               ({"dialogue": ["hi"], "no_retrieval": True, "keep_skeleton": True}, 400, "cannot be combined"),
               ({"dialogue": ["hi"], "guidance": -1}, 400, "guidance=-1")]
        for body, status, message in bad:
            answer = post(server.url, body)
            assert answer.status_code == status and message in answer.json()["error"], (body, answer.text)
            assert "Traceback" not in answer.text
            assert post(server.url, {"dialogue": ["My dog is sick."]}).status_code == 200  # still serving


def test_twenty_concurrent_requests_each_get_their_own_answer(service):
    """20 requests at once on loopback: every one answered, each with its own dialogue; latency percentiles printed
    (docs/demo.md quotes a run)."""
    dialogues = [[f"My friend number {i} moved away.", f"I miss friend {i}."] for i in range(20)]

    def timed(dialogue):
        start = time.perf_counter()
        answer = post(server.url, {"dialogue": dialogue, "samples": 1, "rerank": "none"})
        return answer, time.perf_counter() - start

    with Server(build_app(service)) as server, ThreadPoolExecutor(20) as pool:
        results = list(pool.map(timed, dialogues))
    assert all(a.status_code == 200 for a, _ in results), [a.text for a, _ in results if a.status_code != 200]
    for dialogue, (answer, _) in zip(dialogues, results):
        assert [r["context"] for r in answer.json()["responses"]] == [dialogue] * K  # none lost or mixed up
    latency = np.array([s for _, s in results])
    print(f"\n20 concurrent requests: latency p50 {np.percentile(latency, 50):.2f} s, p90 "
          f"{np.percentile(latency, 90):.2f} s, max {latency.max():.2f} s")


def test_requests_beyond_the_queue_limit_are_refused_then_served(service, monkeypatch):
    """With max_pending 3 and the model held, three requests wait and a fourth is refused at once with a 503; once
    the model is free the three are answered, and so is the next request."""
    release, answer = threading.Event(), service._answer

    def held(request):
        release.wait(60)
        return answer(request)

    monkeypatch.setattr(service, "_answer", held)
    monkeypatch.setattr(service, "max_pending", 3)
    with Server(build_app(service)) as server, ThreadPoolExecutor(3) as pool:
        waiting = [pool.submit(post, server.url, {"dialogue": [f"turn {i}"], "samples": 1}) for i in range(3)]
        deadline = time.monotonic() + 60
        while service._pending < 3:
            assert time.monotonic() < deadline, "the three requests did not arrive"
            time.sleep(0.05)
        busy = post(server.url, {"dialogue": ["one too many"]}, timeout=10)
        assert busy.status_code == 503 and "busy" in busy.json()["error"] and busy.headers["retry-after"] == "5"
        release.set()
        assert [w.result().status_code for w in waiting] == [200, 200, 200]
        assert post(server.url, {"dialogue": ["after the rush"]}).status_code == 200


# --- the page in a browser -------------------------------------------------------------------------------------------
def chromium():
    """Debian's chromium under Selenium with Debian's chromedriver (no driver or browser download)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service as ChromeService

    binary, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert binary and driver, "chromium and chromium-driver are missing: `make test` installs them (apt-get)"
    os.environ["SE_OFFLINE"] = "true"  # Selenium Manager must not look for drivers online
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1500"):
        options.add_argument(arg)
    return webdriver.Chrome(service=ChromeService(driver), options=options)


def test_the_page_in_a_browser_answers_and_sends_the_controls_set(service, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    with Server(build_app(service, page=build_page)) as server:
        browser = chromium()
        try:
            wait = WebDriverWait(browser, 60)
            browser.get(server.url)
            box = wait.until(ready.element_to_be_clickable((By.CSS_SELECTOR, "#dialogue textarea")))
            box.send_keys("I lost my job today.")

            def submit_and_read() -> list[str]:
                before = service.answered
                browser.find_element(By.ID, "submit").click()
                wait.until(lambda b: service.answered > before)
                number = str(service.answered)  # the page shows this answer's table, not the previous one's
                wait.until(lambda b: [t.get_attribute("data-answer") for t in
                                      b.find_elements(By.CSS_SELECTOR, "#responses table")] == [number])
                return [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#responses .response")]

            first = submit_and_read()
            assert len(first) == K and service.received[-1].dialogue == ("I lost my job today.",)
            assert service.received[-1].cm == ()
            browser.find_element(By.XPATH, "//*[@id='cm']//label[contains(., 'exploration')]").click()
            submit_and_read()
            assert service.received[-1].cm == ("exploration",)  # the widget reached the server's request
            assert "EXPLORATION" in browser.find_element(By.ID, "responses").text
            shot = Path(os.environ.get("DEMO_SCREENSHOT") or tmp_path / "demo.png")  # a file to keep: docs/demo.md
            browser.save_screenshot(str(shot))
            assert shot.read_bytes()[:4] == b"\x89PNG"
        finally:
            browser.quit()


def test_make_demo_without_the_models_names_the_dvc_target(artifacts, tmp_path):  # noqa: F811
    from typer.testing import CliRunner

    from stages import demo

    args = [*artifacts[:4], "--model", str(tmp_path / "absent"), "--params", option(artifacts, "--params")]
    result = CliRunner().invoke(demo.app, args)
    assert result.exit_code == 1 and "dvc repro train_diffusion" in result.output, result.output
