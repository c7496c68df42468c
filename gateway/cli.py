"""`gateway --config FILE [--host H] [--port P] [--workers N]`."""

from __future__ import annotations

import argparse
import logging
import multiprocessing
import os
import signal
import sys
import time
from multiprocessing.connection import wait
from types import FrameType

from gateway.config import Config, ConfigError, load_config
from gateway.plugin_loader import check_plugins
from gateway.router import Router

log = logging.getLogger("gateway")

RESPAWN_WINDOW = 5.0


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="gateway", description="OpenAI-compatible LLM gateway")
    parser.add_argument("--config", default=os.environ.get("CONFIG_FILE_PATH", "config.yaml"),
                        help="LiteLLM-style config.yaml (default: $CONFIG_FILE_PATH or ./config.yaml)")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "4000")))
    parser.add_argument("--workers", type=int, default=1, help="processes sharing the port (SO_REUSEPORT)")
    parser.add_argument("--log-level", default=os.environ.get("LOG_LEVEL", "info"),
                        choices=["debug", "info", "warning", "error"])
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = checked_config(args.config)
    if config is None:
        return 2
    if args.workers <= 1:
        from gateway.server import run

        run(config, args.host, args.port, reuse_port=False)
        return 0
    return supervise(args)


def checked_config(path: str) -> Config | None:
    """The config, fully validated (router included), or None after saying why on stderr."""
    warnings: list[str] = []
    try:
        config = load_config(path, warnings)
        Router(config)
        check_plugins(config.gateway_settings.plugins)
    except ConfigError as exc:
        print(f"gateway: config error: {exc}", file=sys.stderr)
        return None
    for warning in warnings:
        log.warning("config: %s", warning)
    return config


def _worker(args: argparse.Namespace) -> None:
    logging.basicConfig(level=args.log_level.upper(),
                        format=f"%(asctime)s %(levelname)s %(name)s[{os.getpid()}]: %(message)s")
    from gateway.server import run

    # The config was checked by the parent; workers load it again rather than unpickle it.
    run(load_config(args.config), args.host, args.port, reuse_port=True, worker=True)


def supervise(args: argparse.Namespace) -> int:
    """Run N workers on one port; pass SIGTERM on, replace a worker that dies, exit when all are done."""
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
            if process.exitcode != 0 and lived < RESPAWN_WINDOW:
                log.error("worker %s exited with %s right after start; stopping", process.pid, process.exitcode)
                exit_code = 1
                on_signal(signal.SIGTERM, None)
                continue
            log.warning("worker %s exited with %s; starting a new one", process.pid, process.exitcode)
            workers.append(start())
    return exit_code
