"""bench/run --quick keeps working: it runs every path (a-d) and the backlog
run on small numbers and writes results.md and one runs.jsonl line. Only
the shape of the output is checked, never a timing or a rate."""
import json
import os
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
RUN = os.path.join(ROOT, "bench", "run")


def test_bench_quick(tmp_path):
    binary = os.environ.get("SWITCHYARD_BIN", os.path.join(ROOT, "build", "default", "switchyard"))
    if os.geteuid() != 0:
        pytest.skip("bench/run needs root (a private Postfix)")
    if not os.access(binary, os.X_OK):
        pytest.skip("no switchyard binary at %s" % binary)
    out = tmp_path / "results"
    env = dict(os.environ, SWITCHYARD_BIN=binary)
    t0 = time.monotonic()
    try:
        p = subprocess.run(["/usr/bin/python3", RUN, "--quick", "--results", str(out)],
                           capture_output=True, text=True, env=env, timeout=600)
    except subprocess.TimeoutExpired:
        pytest.skip("bench/run --quick took more than 600 s on this machine")
    took = time.monotonic() - t0
    assert p.returncode == 0, "after %.0f s:\n%s" % (took, p.stderr[-4000:])
    lines = (out / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1
    run = json.loads(lines[0])
    assert run["settings"]["quick"] is True
    for k in ("nproc", "model_name", "kernel", "loadavg_start", "loadavg_end"):
        assert k in run["machine"]
    assert [x["path"] for x in run["paths"]] == ["a", "b", "c", "d"]
    for x in run["paths"]:
        assert "error" not in x, x
        assert x["messages"] == run["settings"]["messages"]
        assert x["msg_per_s"] > 0
        assert set(x["cpu_s_per_1000"]) == {"switchyard", "redis", "postfix", "total"}
        assert x["ratio_to_a"]["msg_per_s"] > 0
        assert x["latency"]["samples"] > 0 and x["latency"]["p99_ms"] >= x["latency"]["p50_ms"]
        if x["path"] != "a":
            assert x["switchyard_vmhwm_kib"] > 0
    b = run["backlog"]
    assert "error" not in b, b
    for k in ("small", "large"):
        assert b[k]["delivered_while_held"] == 0
        assert b[k]["redis_bytes_per_rcpt"] > 0
        assert b[k]["drain_rcpt_per_s"] > 0
    md = (out / "results.md").read_text()
    assert md.startswith("# switchyard benchmark")
    assert md.count("\n| (") == 4 and "## Backlog" in md
    sys.stdout.write(md)
