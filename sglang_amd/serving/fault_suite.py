"""The load-and-fault suite: phases run against one live server, each returning its figures.

Where it sits: `tests/test_e2e_serve.py` runs it CI-sized and gates on the
figures; `sglang-amd bench serve` (`bench/serve.py`) runs it full-sized and
reports them. The phases, in the order a server can take them (the last one
stops it):
- `run_load`: concurrent greedy requests (`load.workload`), every answer
  compared with the same request sent alone afterwards;
- `run_fuzz`: every `fault_cases` request, its answer class checked, the
  server's health after each, and a probe answered as before at the end;
- `run_disconnects`: streaming clients that hang up after the first chunk; the
  scheduler must drop their requests (`/v1/loads`) long before they would end;
- `run_kv_exhaustion`: more long prompts at once than the KV pool holds (they
  must queue and all be served right), one prompt longer than the pool
  (refused), one whose output would overflow the pool (cut with
  finish_reason "length"), the server's memory sampled throughout;
- `run_sigterm`: SIGTERM while requests are in flight; each must finish right
  or get a clear error, and the server must exit 0 within a bound.
Never imports sglang.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import requests

from sglang_amd.serving.fault_cases import REFUSED, SERVED, FaultCase
from sglang_amd.serving.load import (
    Answer,
    InFlight,
    LoadRequest,
    percentile,
    send_all,
    send_each_alone,
    send_one,
    workload,
)
from sglang_amd.serving.server_process import ServerProcess

PROBE = LoadRequest("The capital of France is", 8, stream=False)


@dataclass(frozen=True)
class SuiteSize:
    name: str
    load_requests: int
    load_max_tokens: tuple[int, int]
    kv_requests: int
    sigterm_requests: int
    sigterm_max_tokens: int


CI = SuiteSize("ci", 24, (1, 4), 3, 4, 8)
FULL = SuiteSize("full", 200, (1, 8), 8, 16, 24)


def server_loads(server: ServerProcess) -> dict:
    """SGLang's /v1/loads for the one data-parallel rank: running, waiting, pool size."""
    return requests.get(f"{server.base}/v1/loads", timeout=30).json()["loads"][0]


class _RssSampler:
    """The server's resident memory every `period_s` while the phase runs."""

    def __init__(self, server: ServerProcess, period_s: float = 0.5):
        self.server, self.period_s = server, period_s
        self.samples: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(self.server.rss_bytes())
            self._stop.wait(self.period_s)

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _compare(got: list[Answer], solo: list[Answer]) -> list[int]:
    return [
        i
        for i, (a, b) in enumerate(zip(got, solo, strict=True))
        if a.ok and b.ok and a.text != b.text
    ]


@dataclass
class LoadFigures:
    requests: int
    streamed: int
    behind_shared_prefix: int
    lost: int  # no answer, a non-200, or a stream cut short
    errors: list[str]
    mismatched: list[int]  # differ from the same request sent alone
    wall_s: float
    p50_s: float
    p95_s: float
    max_s: float
    solo_p50_s: float
    rss_before: int
    rss_peak: int
    latencies_s: list[float] = field(default_factory=list, repr=False)
    solo_latencies_s: list[float] = field(default_factory=list, repr=False)


def run_load(server: ServerProcess, size: SuiteSize, seed: int = 0) -> LoadFigures:
    reqs = workload(size.load_requests, seed=seed, max_tokens=size.load_max_tokens)
    with _RssSampler(server) as rss:
        t0 = time.monotonic()
        got = send_all(server.base, server.model, reqs)
        wall = time.monotonic() - t0
    solo = send_each_alone(server.base, server.model, reqs)
    lat = [a.latency_s for a in got if a.ok]
    solo_lat = [a.latency_s for a in solo if a.ok]
    return LoadFigures(
        requests=len(reqs),
        streamed=sum(r.stream for r in reqs),
        behind_shared_prefix=sum(r.shared_prefix for r in reqs),
        lost=sum(not a.ok for a in got),
        errors=[f"{a.status}: {a.error}" for a in got if not a.ok][:5],
        mismatched=_compare(got, solo),
        wall_s=wall,
        p50_s=percentile(lat, 0.5),
        p95_s=percentile(lat, 0.95),
        max_s=max(lat, default=float("nan")),
        solo_p50_s=percentile(solo_lat, 0.5),
        rss_before=rss.samples[0],
        rss_peak=max(rss.samples),
        latencies_s=lat,
        solo_latencies_s=solo_lat,
    )


@dataclass
class CaseOutcome:
    name: str
    endpoint: str
    expect: str
    status: int | None
    message: str
    passed: bool
    healthy_after: bool
    killed: str
    seconds: float


def _message(r: requests.Response) -> str:
    try:
        body = r.json()
    except ValueError:
        return r.text[:200]
    if isinstance(body, dict):
        err = body.get("error", body.get("message", body))
        if isinstance(err, dict):
            err = err.get("message", err)
        return " ".join(str(err).split())[:200]
    return str(body)[:200]


def _send_case(server: ServerProcess, case: FaultCase) -> tuple[int | None, str]:
    try:
        r = requests.post(
            f"{server.base}{case.endpoint}",
            data=case.payload(server.model),
            headers={"content-type": "application/json"},
            timeout=300,
        )
    except requests.RequestException as exc:
        return None, repr(exc)[:200]
    return r.status_code, ("" if r.status_code == 200 else _message(r))


def _case_passed(case: FaultCase, status: int | None, message: str) -> bool:
    if case.expect == SERVED:
        return status == 200
    assert case.expect == REFUSED
    return status is not None and 400 <= status < 500 and case.field.lower() in message.lower()


def _responsive(server: ServerProcess) -> bool:
    """Alive and its scheduler answering; cheaper than /health (which waits ~1 s for a
    probe generation). A dead scheduler takes SGLang's whole process group with it."""
    try:
        server_loads(server)
    except (requests.RequestException, ValueError, KeyError):
        return False
    return server.alive()


@dataclass
class FuzzFigures:
    outcomes: list[CaseOutcome]
    probe_before: str
    probe_after: str
    healthy_at_end: bool  # SGLang's own /health after the last case

    @property
    def failed(self) -> list[CaseOutcome]:
        return [o for o in self.outcomes if not (o.passed and o.healthy_after)]


def run_fuzz(server: ServerProcess, cases: list[FaultCase]) -> FuzzFigures:
    before = send_one(server.base, server.model, PROBE).text
    outcomes = []
    for case in cases:
        t0 = time.monotonic()
        status, message = _send_case(server, case)
        seconds = time.monotonic() - t0
        healthy = _responsive(server)
        passed = _case_passed(case, status, message)
        outcomes.append(
            CaseOutcome(
                case.name, case.endpoint, case.expect, status, message,
                passed, healthy, case.killed, seconds,
            )
        )  # fmt: skip
        if not healthy:
            break  # the rest would only repeat the failure
    healthy = server.alive() and server.healthy()
    after = send_one(server.base, server.model, PROBE).text if healthy else ""
    return FuzzFigures(outcomes, before, after, healthy)


@dataclass
class DisconnectFigures:
    streams: int
    max_tokens: int
    drained_s: float | None  # until /v1/loads shows nothing running; None: never
    healthy: bool
    probe_same: bool


def run_disconnects(
    server: ServerProcess, streams: int = 4, max_tokens: int = 2000
) -> DisconnectFigures:
    """Streaming clients that read one chunk and hang up; SGLang must abort their requests."""
    before = send_one(server.base, server.model, PROBE).text
    for i in range(streams):
        body = {
            "model": server.model,
            "prompt": f"Count to a thousand, client {i}:",
            "max_tokens": max_tokens,
            "temperature": 0,
            "ignore_eos": True,
            "stream": True,
        }
        with requests.post(
            f"{server.base}/v1/completions", json=body, stream=True, timeout=120
        ) as r:
            next(r.iter_lines())
        # leaving the block closes the socket mid-stream
    t0 = time.monotonic()
    drained = None
    while time.monotonic() - t0 < 120:
        load = server_loads(server)
        if load["num_running_reqs"] + load["num_waiting_reqs"] == 0:
            drained = time.monotonic() - t0
            break
        time.sleep(0.5)
    healthy = server.healthy()
    same = send_one(server.base, server.model, PROBE).text == before
    return DisconnectFigures(streams, max_tokens, drained, healthy, same)


@dataclass
class KvFigures:
    pool_tokens: int
    requests: int
    prompt_tokens: int
    lost: int
    mismatched: list[int]
    peak_running: int
    peak_waiting: int  # > 0: requests queued for KV space (the pool ran out)
    too_long_status: int | None
    too_long_message: str
    overflow_finish: str
    overflow_completion_tokens: int
    overflow_max_tokens: int
    rss_before: int
    rss_peak: int
    rss_after: int
    errors: list[str] = field(default_factory=list)


def _ids(rng: random.Random, n: int, vocab: int) -> list[int]:
    # Away from the special tokens at the start of most vocabularies.
    return [rng.randrange(min(100, vocab // 2), min(vocab, 20000)) for _ in range(n)]


def _completion_ids(server: ServerProcess, ids: list[int], max_tokens: int) -> requests.Response:
    body = {
        "model": server.model,
        "prompt": ids,
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
    }
    return requests.post(f"{server.base}/v1/completions", json=body, timeout=900)


def run_kv_exhaustion(
    server: ServerProcess, size: SuiteSize, vocab_size: int, seed: int = 1
) -> KvFigures:
    pool = int(server_loads(server)["max_total_num_tokens"])
    rng = random.Random(seed)
    prompt_len = int(0.4 * pool)  # two fit at once, the rest must wait
    reqs = [
        LoadRequest(_ids(rng, prompt_len, vocab_size), 8, stream=False)
        for _ in range(size.kv_requests)
    ]
    peak = waiting = 0
    with _RssSampler(server) as rss:
        in_flight = InFlight(server.base, server.model, reqs)
        while in_flight.running():
            load = server_loads(server)
            peak = max(peak, load["num_running_reqs"])
            waiting = max(waiting, load["num_waiting_reqs"])
            time.sleep(0.5)
        answers = in_flight.join()
        solo = send_each_alone(server.base, server.model, reqs)
        too_long = _completion_ids(server, _ids(rng, pool + 16, vocab_size), 4)
        overflow_max = 64
        overflow = _completion_ids(server, _ids(rng, pool - 24, vocab_size), overflow_max)
    ob = overflow.json() if overflow.status_code == 200 else {}
    choice = (ob.get("choices") or [{}])[0]
    return KvFigures(
        pool_tokens=pool,
        requests=len(reqs),
        prompt_tokens=prompt_len,
        lost=sum(not a.ok for a in answers),
        mismatched=_compare(answers, solo),
        peak_running=peak,
        peak_waiting=waiting,
        too_long_status=too_long.status_code,
        too_long_message="" if too_long.status_code == 200 else _message(too_long),
        overflow_finish=str(choice.get("finish_reason", f"HTTP {overflow.status_code}")),
        overflow_completion_tokens=int(ob.get("usage", {}).get("completion_tokens", 0)),
        overflow_max_tokens=overflow_max,
        rss_before=rss.samples[0],
        rss_peak=max(rss.samples),
        rss_after=rss.samples[-1],
        errors=[f"{a.status}: {a.error}" for a in answers if not a.ok][:5],
    )


@dataclass
class SigtermFigures:
    in_flight: int
    finished_right: int
    clear_errors: int
    lost: int  # neither a right answer nor an HTTP error: the connection just dropped
    mismatched: int
    exit_code: int | None  # None: still running at the bound
    exit_s: float
    bound_s: float
    group_gone: bool
    details: list[str] = field(default_factory=list)


def run_sigterm(server: ServerProcess, size: SuiteSize, bound_s: float = 120.0) -> SigtermFigures:
    """SIGTERM with `size.sigterm_requests` requests in flight; SGLang drains, then exits."""
    reqs = [
        LoadRequest(f"Write a story about the number {i}.", size.sigterm_max_tokens, i % 2 == 0)
        for i in range(size.sigterm_requests)
    ]
    solo = send_each_alone(server.base, server.model, reqs)
    in_flight = InFlight(server.base, server.model, reqs)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # every request reached the scheduler
        load = server_loads(server)
        if load["num_running_reqs"] + load["num_waiting_reqs"] >= len(reqs):
            break
        time.sleep(0.1)
    t0 = time.monotonic()
    code = server.terminate(bound_s)
    exit_s = time.monotonic() - t0
    answers = in_flight.join(timeout_s=30)
    right = errors = lost = mismatched = 0
    details = []
    for a, s in zip(answers, solo, strict=True):
        if a.ok and a.text == s.text:
            right += 1
        elif a.ok:
            mismatched += 1
        elif a.status is not None:
            errors += 1
            details.append(f"HTTP {a.status}: {a.error}")
        else:
            lost += 1
            details.append(a.error)
    gone = server.wait_group_gone(30)
    return SigtermFigures(
        len(reqs), right, errors, lost, mismatched, code, exit_s, bound_s, gone, details
    )
