"""Drive `wrk` with a Lua script that POSTs a fixed body and prints JSON.

wrk sees only whole responses, so it cannot time the first byte of a stream;
the caller keeps streaming workloads on the Python generator.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import tempfile
from pathlib import Path

import orjson

from benchmarks.load_result import LoadResult

MARKER = "WRK_RESULT "
# Placeholders instead of str.format: the Lua below is full of braces.
_SCRIPT = """
wrk.method = "POST"
wrk.body = [==[@BODY@]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer @KEY@"
@HEADERS@
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '@MARKER@{"requests":%d,"duration_us":%d,"connect":%d,"read":%d,"write":%d,'
    .. '"status":%d,"timeout":%d,"p50_us":%f,"p99_us":%f}\\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_path() -> str | None:
    return shutil.which("wrk")


def _script(body: bytes, api_key: str, headers: tuple[tuple[str, str], ...] = ()) -> str:
    text = body.decode()
    if "]==]" in text or any("]==]" in k + v for k, v in headers):
        raise ValueError("body cannot be embedded in a Lua long string")
    extra = "".join(f'wrk.headers[ [==[{k}]==] ] = [==[{v}]==]\n' for k, v in headers)
    return _SCRIPT.replace("@BODY@", text).replace("@KEY@", api_key).replace("@MARKER@", MARKER).replace(
        "@HEADERS@", extra)


def _parse(stdout: str, stderr: str) -> LoadResult:
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            raw = orjson.loads(line[len(MARKER) :])
            bad_status = int(raw["status"])
            errors = bad_status + sum(int(raw[k]) for k in ("connect", "read", "write", "timeout"))
            ok = max(0, int(raw["requests"]) - bad_status)
            first_error = None
            if errors:
                first_error = "wrk errors: " + ", ".join(
                    f"{k}={raw[k]}" for k in ("connect", "read", "write", "status", "timeout") if raw[k]
                )
            return LoadResult(
                tool="wrk",
                requests=ok,
                errors=errors,
                elapsed_s=int(raw["duration_us"]) / 1e6,
                p50_ms=raw["p50_us"] / 1000 if ok else None,
                p99_ms=raw["p99_us"] / 1000 if ok else None,
                first_error=first_error,
            )
    tail = (stderr or stdout).strip().splitlines()[-3:]
    return LoadResult.failed("wrk", "wrk produced no result: " + " | ".join(tail))


def run_wrk(
    url: str, body: bytes, api_key: str, concurrency: int, duration_s: float,
    headers: tuple[tuple[str, str], ...] = (),
) -> LoadResult:
    exe = wrk_path()
    if exe is None:
        return LoadResult.failed("wrk", "wrk is not on PATH")
    # wrk takes whole seconds only
    seconds = max(1, math.ceil(duration_s))
    with tempfile.TemporaryDirectory(prefix="bench-wrk-") as tmp:
        script = Path(tmp) / "post.lua"
        script.write_text(_script(body, api_key, headers))
        argv = [exe, "-t1", f"-c{max(1, concurrency)}", f"-d{seconds}s", "--timeout", "10s", "-s", str(script), url]
        try:
            done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=seconds + 30)
        except subprocess.TimeoutExpired:
            return LoadResult.failed("wrk", f"wrk did not finish within {seconds + 30}s")
    return _parse(done.stdout, done.stderr)
