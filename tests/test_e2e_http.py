"""`sglang-amd serve` end to end over HTTP on the CPU reference platform.

Starts the real server in its own process group, asks the OpenAI-compatible
endpoints for a chat answer and a streamed completion, then stops it with
SIGTERM and checks that no process of the group is left behind.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import requests

pytestmark = [pytest.mark.e2e, pytest.mark.sglang]

START_TIMEOUT_S = 600


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="module")
def server(smollm2_path, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("serve") / "server.log"
    from tests.e2e_engines import server_env

    env = {k: v for k, v in server_env().items() if k != "SGLANG_AMD_TRACE"}
    cmd = [
        sys.executable,
        "-m",
        "sglang_amd.cli",
        "serve",
        # Explicit, so that a GPU machine serves the same SmolLM2-on-CPU setup
        # instead of asking for --model-path.
        "--device",
        "cpu",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--max-total-tokens",
        "8192",
        "--log-level",
        "warning",
    ]
    with open(log, "w") as out:
        proc = subprocess.Popen(
            cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.time() + START_TIMEOUT_S
    while True:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{base}/health", timeout=2).status_code == 200:
                break
        except requests.RequestException:
            pass
        if time.time() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"server did not become healthy:\n{log.read_text()[-4000:]}")
        time.sleep(1)
    model = requests.get(f"{base}/v1/models", timeout=10).json()["data"][0]["id"]
    yield base, model, proc, log
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)


def test_chat_completion_answers_paris(server):
    base, model, _, _ = server
    r = requests.post(
        f"{base}/v1/chat/completions",
        json={
            "model": model,
            "messages": [{"role": "user", "content": "What is the capital of France?"}],
            "temperature": 0,
            "max_tokens": 32,
        },
        timeout=120,
    )
    r.raise_for_status()
    text = r.json()["choices"][0]["message"]["content"]
    assert "Paris" in text, text


def test_completion_streams(server):
    base, model, _, _ = server
    chunks = []
    with requests.post(
        f"{base}/v1/completions",
        json={
            "model": model,
            "prompt": "The capital of France is",
            "temperature": 0,
            "max_tokens": 12,
            "stream": True,
        },
        stream=True,
        timeout=120,
    ) as r:
        r.raise_for_status()
        for line in r.iter_lines(decode_unicode=True):
            if line and line.startswith("data: "):
                chunks.append(line[len("data: ") :])
    assert chunks[-1] == "[DONE]"
    texts = [json.loads(c)["choices"][0]["text"] for c in chunks[:-1] if json.loads(c)["choices"]]
    assert len([t for t in texts if t]) >= 2, chunks
    assert "Paris" in "".join(texts)


BAD_TOKEN_REQUESTS = [
    # (endpoint, body): token ids the model cannot embed, each once killed the scheduler
    ("/v1/completions", {"prompt": [1000000000, 5], "max_tokens": 4}),
    ("/v1/completions", {"prompt": [5, -1], "max_tokens": 4}),
    ("/generate", {"input_ids": [1, 2, 49152], "sampling_params": {"max_new_tokens": 4}}),
]


@pytest.mark.parametrize("endpoint,body", BAD_TOKEN_REQUESTS, ids=["huge", "negative", "vocab"])
def test_out_of_vocab_token_ids_get_400_and_the_server_serves_on(server, endpoint, body):
    base, model, proc, _ = server
    if endpoint.startswith("/v1"):
        body = {**body, "model": model}
    r = requests.post(f"{base}{endpoint}", json=body, timeout=60)
    assert r.status_code == 400, (r.status_code, r.text)
    assert "input_ids" in r.text and "vocabulary" in r.text, r.text
    assert proc.poll() is None
    ok = requests.post(
        f"{base}/v1/completions",
        json={"model": model, "prompt": [504, 3575, 282], "max_tokens": 2, "temperature": 0},
        timeout=120,
    )
    assert ok.status_code == 200, ok.text
    assert requests.get(f"{base}/health", timeout=10).status_code == 200


def test_server_stops_cleanly(server):
    _, _, proc, log = server
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail(f"server ignored SIGTERM:\n{log.read_text()[-4000:]}")
    deadline = time.time() + 30
    while _group_alive(proc.pid) and time.time() < deadline:
        time.sleep(0.5)
    assert not _group_alive(proc.pid), "server left processes behind"
    assert "Traceback" not in log.read_text()
