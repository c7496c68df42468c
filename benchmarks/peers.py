"""Other gateways a user might pick instead, run as optional targets beside ours.

    python -m benchmarks.peers install [litellm] [portkey]   # into gitignored folders of this checkout
    python -m benchmarks.peers status

- **LiteLLM's proxy** (`litellm[proxy]`, pinned) lives in `.venv-litellm-peer` (LITELLM_PEER_VENV names
  another venv), never in the project's own: its dependency tree must not shape the gateway's. It runs with
  a generated config (the benchmark's models on the fake upstream, a master key, no database), so its
  chain is lighter than our gateway's: no virtual key look-up, no spend records.
- **Portkey's gateway** (`@portkey-ai/gateway`, pinned) lives in `.peers/portkey` and runs under node. It
  has no config file: the load carries `x-portkey-provider: openai` and `x-portkey-custom-host`, which send
  each request to the fake upstream. Version 1.15.2 on Node 20 fails every stream and embedding with
  `TypeError: immutable` (Portkey-AI/gateway#1389: it appends headers to the upstream's `fetch` response);
  `portkey_shim.cjs` re-wraps that response with mutable headers, the workaround of their PR #1390.

A peer that is not installed is skipped with one line saying how to install it; nothing here is a test
dependency.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from benchmarks.servers import Server, free_port, start_server
from benchmarks.workloads import CHAT_MODEL, EMBED_MODEL, PACED_CHAT_MODEL

REPO_ROOT = Path(__file__).resolve().parent.parent
LITELLM = "litellm"
PORTKEY = "portkey"
PEERS = (LITELLM, PORTKEY)

LITELLM_VERSION = "1.108.7"
LITELLM_REQUIREMENT = f"litellm[proxy]=={LITELLM_VERSION}"
LITELLM_MASTER_KEY = "sk-bench-litellm-master-0123456789"
PORTKEY_VERSION = "1.15.2"
PORTKEY_PACKAGE = f"@portkey-ai/gateway@{PORTKEY_VERSION}"
PORTKEY_SHIM = Path(__file__).resolve().parent / "portkey_shim.cjs"
# LiteLLM imports for about 30 s on this machine before it listens.
START_TIMEOUT_S = 180.0


@dataclass(frozen=True, slots=True)
class Peer:
    name: str
    server: Server
    api_key: str
    version: str
    headers: dict[str, str] = field(default_factory=dict)


def litellm_venv() -> Path:
    return Path(os.environ.get("LITELLM_PEER_VENV") or REPO_ROOT / ".venv-litellm-peer")


def portkey_dir() -> Path:
    return REPO_ROOT / ".peers" / "portkey"


def _portkey_entry() -> Path:
    return portkey_dir() / "node_modules" / "@portkey-ai" / "gateway" / "build" / "start-server.js"


def installed_version(name: str) -> str | None:
    """The peer's version when it is installed here, else None."""
    if name == LITELLM:
        python = litellm_venv() / "bin" / "python"
        if not (litellm_venv() / "bin" / "litellm").exists():
            return None
        done = subprocess.run(
            [str(python), "-c", "import importlib.metadata as m; print(m.version('litellm'))"],
            check=False, capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        return (done.stdout.strip() or None) if done.returncode == 0 else None
    if name == PORTKEY:
        manifest = _portkey_entry().parent.parent / "package.json"
        if shutil.which("node") is None or not manifest.exists():
            return None
        return str(json.loads(manifest.read_text())["version"])
    raise ValueError(f"unknown peer {name!r}")


def how_to_install(name: str) -> str:
    return f"{name} is not installed: python -m benchmarks.peers install {name}"


def install(name: str) -> None:
    if name == LITELLM:
        venv = litellm_venv()
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                        LITELLM_REQUIREMENT], check=True)  # fmt: skip
    elif name == PORTKEY:
        npm = shutil.which("npm")
        if npm is None:
            raise SystemExit("npm is not on PATH")
        folder = portkey_dir()
        folder.mkdir(parents=True, exist_ok=True)
        if not (folder / "package.json").exists():
            (folder / "package.json").write_text('{"name": "portkey-peer", "private": true}\n')
        subprocess.run([npm, "install", "--no-audit", "--no-fund", PORTKEY_PACKAGE], cwd=folder, check=True)
    else:
        raise SystemExit(f"unknown peer {name!r}; known: {', '.join(PEERS)}")


def _litellm_config(upstream: str) -> dict[str, object]:
    def model(name: str, mode: str | None = None) -> dict[str, object]:
        entry: dict[str, object] = {
            "model_name": name,
            "litellm_params": {"model": f"openai/{name}", "api_base": f"{upstream}/v1", "api_key": "sk-upstream"},
        }
        if mode is not None:
            entry["model_info"] = {"mode": mode}
        return entry

    return {
        "model_list": [model(CHAT_MODEL), model(PACED_CHAT_MODEL), model(EMBED_MODEL, "embedding")],
        "general_settings": {"master_key": LITELLM_MASTER_KEY},
    }


def start(name: str, tmp: Path, upstream: str, version: str) -> Peer:
    """Start an installed peer in front of the fake upstream; ServerStartError if it does not listen."""
    port = free_port()
    if name == LITELLM:
        config = tmp / "litellm.yaml"
        config.write_text(yaml.safe_dump(_litellm_config(upstream), sort_keys=False))
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no fetch of the price map at start
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        argv = [str(litellm_venv() / "bin" / "litellm"), "--config", str(config), "--host", "127.0.0.1",
                "--port", str(port), "--num_workers", "1"]  # fmt: skip
        server = start_server(LITELLM, argv, port, tmp, tmp, timeout_s=START_TIMEOUT_S)
        return Peer(LITELLM, server, LITELLM_MASTER_KEY, version)
    node = shutil.which("node") or "node"
    argv = [node, "--require", str(PORTKEY_SHIM), str(_portkey_entry()), f"--port={port}", "--headless"]
    server = start_server(PORTKEY, argv, port, tmp, portkey_dir(), timeout_s=START_TIMEOUT_S)
    headers = {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream}/v1"}
    return Peer(PORTKEY, server, "sk-upstream", version, headers)


def parse_peers(text: str) -> tuple[str, ...]:
    """--peers: auto (whichever is installed), none, or a comma list."""
    if text in ("auto", "none"):
        return PEERS if text == "auto" else ()
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s) {', '.join(unknown)}; known: {', '.join(PEERS)}")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=("install", "status"))
    parser.add_argument("names", nargs="*", help=f"peers ({', '.join(PEERS)}; default: all)")
    args = parser.parse_args(argv)
    try:
        names = parse_peers(",".join(args.names)) or PEERS
    except ValueError as exc:
        parser.error(str(exc))
    if args.action == "install":
        for name in names:
            install(name)
    for name in names:
        version = installed_version(name)
        print(f"{name}: {version}" if version else how_to_install(name))


if __name__ == "__main__":
    main()
