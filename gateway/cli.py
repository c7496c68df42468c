"""`gateway --config FILE [--host H] [--port P] [--workers N]`."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import shutil
import signal
import sys
import tempfile
import time
from multiprocessing.connection import wait
from types import FrameType

from gateway import logs
from gateway.config import Config, ConfigError, load_config
from gateway.logs import json_logs_from_environment
from gateway.management.key_policy import KeyPolicy
from gateway.management.rotation import RotationSettings
from gateway.metrics.shared import DIRECTORY_VARIABLE
from gateway.node.client import SOCKET_VARIABLE
from gateway.node.server import NodeServer
from gateway.plugin_loader import check_plugins
from gateway.redis_client import redis_target
from gateway.router import Router

log = logging.getLogger("gateway")

RESPAWN_WINDOW = 5.0
CONFIG_ERROR = 2  # the exit code of a start refused for its config


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible LLM gateway")
    parser.add_argument("--config", default=os.environ.get("CONFIG_FILE_PATH", "config.yaml"),
                        help="LiteLLM-style config.yaml (default: $CONFIG_FILE_PATH or ./config.yaml)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4000")))
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    parser.add_argument("--json-logs", action="store_true", default=json_logs_from_environment(),
                        help="one JSON object per log line, access log included (also $JSON_LOGS, or "
                             "litellm_settings.json_logs)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs.setup(args.log_level, args.json_logs)
    config = checked_config(args.config)
    if config is None:
        return CONFIG_ERROR
    if config.litellm_settings.json_logs and not args.json_logs:
        args.json_logs = True
        logs.setup(args.log_level, json=True)
    config.litellm_settings.json_logs = args.json_logs
    if args.workers <= 1:
        from gateway.server import run

        try:
            run(config, args.host, args.port, reuse_port=False)
        except ConfigError as exc:  # found only once built, e.g. a plugin's settings or its environment
            print(f"gateway: config error: {exc}", file=sys.stderr)
            return CONFIG_ERROR
        return 0
    return supervise(args, config)


def checked_config(path: str) -> Config | None:
    """The config, fully validated (router included), or None after saying why on stderr."""
    warnings: list[str] = []
    try:
        config = load_config(path, warnings)
        Router(config)
        check_plugins(config, warnings)
        KeyPolicy(config)
        RotationSettings.from_environment()
        redis_target(config)
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return None
    for warning in warnings:
        log.warning("config: %s", warning)
    return config


def _worker(args: argparse.Namespace) -> None:
    logs.setup(args.log_level, args.json_logs, pid=True)
    from gateway.server import run

    # The config was checked by the parent; workers load it again rather than unpickle it.
    config = load_config(args.config)
    config.litellm_settings.json_logs = args.json_logs
    try:
        run(config, args.host, args.port, reuse_port=True, worker=True)
    except ConfigError as exc:  # found only once built, e.g. a plugin's settings or its environment
        print(f"gateway: config error: {exc}", file=sys.stderr)
        sys.exit(CONFIG_ERROR)


def supervise(args: argparse.Namespace, config: Config) -> int:
    """Run N workers on one port; pass SIGTERM on, replace a worker that dies, exit when all are done.
    The node's counters run here, on a thread, so that the workers enforce one set of limits."""
    context = multiprocessing.get_context("spawn")
    stopping = False

    def on_signal(signum: int, frame: FrameType | None) -> None:
        nonlocal stopping
        stopping = True
        for process in workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)

    def start() -> multiprocessing.process.BaseProcess:
        process = context.Process(target=_worker, args=(args,), daemon=False)
        process.start()
        started[process.sentinel] = time.monotonic()
        return process

    started: dict[int, float] = {}
    own_metrics_dir = None
    if not os.environ.get(DIRECTORY_VARIABLE):
        # Where workers leave their metrics for whichever of them answers /metrics.
        own_metrics_dir = os.environ[DIRECTORY_VARIABLE] = tempfile.mkdtemp(prefix="gateway-metrics-")
    node_dir = tempfile.mkdtemp(prefix="gateway-node-")
    node = NodeServer(os.path.join(node_dir, "counters.sock"), Router(config))
    node.start()
    os.environ[SOCKET_VARIABLE] = node.path
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    workers = [start() for _ in range(args.workers)]
    exit_code = 0
    while workers:
        wait([p.sentinel for p in workers], timeout=1.0)
        for process in [p for p in workers if not p.is_alive()]:
            workers.remove(process)
            lived = time.monotonic() - started.pop(process.sentinel, 0.0)
            if stopping:
                continue
            if process.exitcode == CONFIG_ERROR:
                exit_code = CONFIG_ERROR  # it said why; the others will say the same
                on_signal(signal.SIGTERM, None)
                continue
            if process.exitcode != 0 and lived < RESPAWN_WINDOW:
                log.error("worker %s exited with %s right after start; stopping", process.pid, process.exitcode)
                exit_code = 1
                on_signal(signal.SIGTERM, None)
                continue
            log.warning("worker %s exited with %s; starting a new one", process.pid, process.exitcode)
            workers.append(start())
    node.stop()
    shutil.rmtree(node_dir, ignore_errors=True)
    if own_metrics_dir is not None:
        shutil.rmtree(own_metrics_dir, ignore_errors=True)
    return exit_code
