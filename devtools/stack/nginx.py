"""nginx run as a user process in a folder: the buffering front server of ``make run`` and the tests.

It serves ``deploy/nginx/citydash.conf``, the file documented for production
(docs/deploy.md), with only the three lines marked ``# citydash:`` replaced: the port it
listens on, the dashboard's (gunicorn's) address, and the cache folder.
"""
from __future__ import annotations

import os
import pwd
import re
from pathlib import Path

from devtools.stack.daemon import Daemon, find_binary

ROOT = Path(__file__).resolve().parents[2]
SITE = ROOT / "deploy" / "nginx" / "citydash.conf"

MAIN = """# Written by citydash (devtools/stack/nginx.py); edits are overwritten.
{user}
worker_processes {workers};
pid {root}/nginx.pid;
error_log {root}/nginx.log warn;

events {{
    worker_connections 4096;
}}

http {{
    include /etc/nginx/mime.types;
    default_type application/octet-stream;
    log_format citydash '$remote_addr [$time_iso8601] "$request" $status $body_bytes_sent '
                        'rt=$request_time urt=$upstream_response_time cache=$upstream_cache_status';
    access_log {root}/access.log citydash;
    client_body_temp_path {root}/tmp/body;
    proxy_temp_path {root}/tmp/proxy;
    fastcgi_temp_path {root}/tmp/fastcgi;
    uwsgi_temp_path {root}/tmp/uwsgi;
    scgi_temp_path {root}/tmp/scgi;
    sendfile on;
    tcp_nopush on;

    include {root}/citydash-site.conf;
}}
"""

_MARKED = re.compile(r"^(?P<indent>\s*)(?P<directive>\S+)\s.*#\s*citydash:(?P<what>\w+)\s*$", re.M)


def site_config(listen: str, upstream: str, cache_dir: Path, text: str | None = None) -> str:
    """``deploy/nginx/citydash.conf`` with its marked lines pointed at this stack."""
    text = SITE.read_text() if text is None else text
    found: set[str] = set()

    def replace(m: re.Match) -> str:
        what = m["what"]
        found.add(what)
        if what == "listen":
            return f"{m['indent']}listen {listen};"
        if what == "upstream":
            return f"{m['indent']}server {upstream};"
        if what == "cache":
            return (f"{m['indent']}proxy_cache_path {cache_dir} levels=1:2 keys_zone=citydash_static:10m "
                    "max_size=256m inactive=7d use_temp_path=off;")
        raise ValueError(f"unknown citydash: marker {what!r} in {SITE}")

    out = _MARKED.sub(replace, text)
    missing = {"listen", "upstream", "cache"} - found
    if missing:
        raise ValueError(f"{SITE} lacks the line(s) marked # citydash:{', # citydash:'.join(sorted(missing))}")
    return out


class LocalNginx(Daemon):
    """``LocalNginx(root, port, upstream="127.0.0.1:8051")``; ``url`` is what browsers open."""

    name = "nginx"
    pid_name = "nginx.pid"
    log_name = "nginx.log"

    def __init__(self, root, port: int, upstream: str, workers: int | str = "auto", host: str = "127.0.0.1"):
        self.upstream, self.workers, self.host = upstream, workers, host
        super().__init__(Path(root), port)

    def find(self) -> str:
        return find_binary("nginx", "/usr/sbin/nginx", package="nginx")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def access_log(self) -> Path:
        return self.root / "access.log"

    def config(self) -> str:
        user = ""
        temp = [self.root / "tmp" / d for d in ("body", "proxy", "fastcgi", "uwsgi", "scgi")]
        cache = self.root / "cache"
        for d in (*temp, cache):
            d.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:  # nginx's workers drop to an unprivileged user; they write these folders
            nobody = pwd.getpwnam("nobody")
            user = "user nobody nogroup;"
            for d in (*temp, cache):
                os.chown(d, nobody.pw_uid, nobody.pw_gid)
            os.chmod(self.root, 0o755)
        (self.root / "citydash-site.conf").write_text(
            site_config(f"{self.host}:{self.port}", self.upstream, cache))
        return MAIN.format(user=user, workers=self.workers, root=self.root)

    def command(self) -> list[str]:
        # -e: the error log before the configuration is read (not /var/log/nginx, not writable here)
        return [self.binary, "-p", str(self.root), "-c", str(self.conf), "-e", str(self.logfile)]
