"""The benchmarks' upstream app: nginx answering ``200 ok`` on 127.0.0.1:$PORT.

A standalone script (no imports from the project), so that a Gossamer workload can run it
by path: ``python _nginx_app.py WORKDIR [PORT]``. The port defaults to ``$PORT``. It
writes an nginx config into WORKDIR and replaces itself with nginx, so the pid that
started it is nginx's, and SIGTERM stops it.

nginx runs in the foreground, with no master process and one worker: a single process
that is fast enough (well over 100k rps on loopback) not to be what a sidecar path
measures. :func:`config` makes such a config around any http block (``bench.compression``
serves a static file with it).
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

_CONFIG = """\
daemon off;
master_process off;
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 120s;
    client_body_temp_path {dir}/tmp-body;
    proxy_temp_path {dir}/tmp-proxy;
    fastcgi_temp_path {dir}/tmp-fastcgi;
    uwsgi_temp_path {dir}/tmp-uwsgi;
    scgi_temp_path {dir}/tmp-scgi;
{http}}}
"""

_OK_SERVER = """\
    server {{
        listen 127.0.0.1:{port};
        default_type text/plain;
        location / {{ return 200 "ok"; }}
    }}
"""


def config(directory: Path | str, http: str, *, worker_connections: int) -> str:
    """An nginx config for one foreground process that keeps its files in ``directory``;
    ``http`` is the rest of the http block (indented, each line ending in a newline)."""
    return _CONFIG.format(dir=directory, http=http, worker_connections=worker_connections)


def nginx_binary() -> str | None:
    """The nginx executable, or None when it is not installed."""
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if Path(p).is_file()), None
    )


def write_config(workdir: Path, port: int) -> Path:
    """Write the app's nginx config into ``workdir`` and return its path."""
    workdir.mkdir(parents=True, exist_ok=True)
    conf = workdir / "nginx.conf"
    server = _OK_SERVER.format(port=port)
    conf.write_text(config(workdir.resolve(), server, worker_connections=4096))
    return conf


def command(workdir: Path, conf: Path) -> list[str]:
    """The nginx command line that serves ``conf``."""
    binary = nginx_binary()
    if binary is None:
        raise FileNotFoundError("nginx is not installed (see bench/README.md)")
    return [binary, "-p", str(workdir.resolve()), "-c", str(conf.resolve())]


def main(argv: list[str]) -> int:
    if not 1 <= len(argv) <= 2:
        print("usage: _nginx_app.py WORKDIR [PORT]  (PORT defaults to $PORT)", file=sys.stderr)
        return 2
    port_text = argv[1] if len(argv) == 2 else os.environ.get("PORT", "")
    if not port_text.isdigit():
        print("_nginx_app.py: no port given and $PORT is not set", file=sys.stderr)
        return 2
    workdir = Path(argv[0])
    conf = write_config(workdir, int(port_text))
    args = command(workdir, conf)
    os.execv(args[0], args)  # replaces this process with nginx


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
