"""Opt-in trace of which sglang-amd code served a running SGLang process.

Set SGLANG_AMD_TRACE=/path/file.jsonl and every process that builds one of our
backends appends one JSON line per distinct event (backend built, first extend
on tier X, first decode on tier X, ...). Answers "did the scheduler really run
our kernels, and which tier?" without a debugger; the e2e tests read it.
Each distinct event is written once per process, so the cost while serving is
one set lookup. Never imports sglang.
"""

from __future__ import annotations

import json
import os
import threading

TRACE_ENV = "SGLANG_AMD_TRACE"

_seen: set[tuple] = set()
_lock = threading.Lock()


def record(event: str, **fields: object) -> None:
    """Append {"event", "pid", **fields} to $SGLANG_AMD_TRACE once per process."""
    path = os.environ.get(TRACE_ENV)
    if not path:
        return
    key = (event, *sorted((k, str(v)) for k, v in fields.items()))
    with _lock:
        if key in _seen:
            return
        _seen.add(key)
        line = json.dumps({"event": event, "pid": os.getpid(), **fields}, default=str)
        with open(path, "a", encoding="utf-8") as f:
            f.write(line + "\n")


def read(path: str | os.PathLike) -> list[dict]:
    """All events written to a trace file (empty when it does not exist)."""
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []
