"""pytest plugin: write each failure's report to $PYTEST_FAILURE_LOG as it happens.

For device runs cut short at their time limit (`scripts/gpu_check.sh`): pytest
prints tracebacks and writes JUnit XML only at the end of the session, so a run
killed at its limit would keep none. Load with `-p scripts.pytest_failure_log`;
under xdist the controller receives every worker's reports and writes them.
"""

from __future__ import annotations

import os


def pytest_runtest_logreport(report) -> None:
    path = os.environ.get("PYTEST_FAILURE_LOG")
    # Workers report to the controller too: write once, there.
    if not path or not report.failed or os.environ.get("PYTEST_XDIST_WORKER"):
        return
    with open(path, "a") as f:
        f.write(f"===== {report.nodeid} ({report.when})\n{report.longreprtext[-6000:]}\n\n")
