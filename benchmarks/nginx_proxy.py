"""nginx as the non-Python reference: a reverse proxy with `proxy_buffering off`.

Run as a child process from a generated config (no daemon, no system
service), one worker, like the single-process gateway it is compared with.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from benchmarks.servers import HOST, Server, start_server

CONFIG = """\
worker_processes 1;
worker_rlimit_nofile {files};
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections {connections};
    multi_accept on;
}}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream fake_upstream {{
        server {upstream};
        keepalive 1024;
    }}
    server {{
        listen {host}:{port} backlog=4096;
        location / {{
            proxy_pass http://fake_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering off;
            proxy_read_timeout 300s;
        }}
    }}
}}
"""


def available() -> str | None:
    return shutil.which("nginx")


def start(binary: str, port: int, upstream: str, workdir: Path, repo: Path, files: int) -> Server:
    """nginx on HOST:port in front of upstream ("http://host:port"), its files under workdir."""
    prefix = workdir / "nginx"
    prefix.mkdir(parents=True, exist_ok=True)
    config = prefix / "nginx.conf"
    config.write_text(CONFIG.format(prefix=prefix, host=HOST, port=port, upstream=upstream.split("://", 1)[1],
                                    files=files, connections=max(1024, files - 64)))
    return start_server("nginx", [binary, "-p", str(prefix), "-c", str(config), "-g", "daemon off;"],
                        port, workdir, repo)
