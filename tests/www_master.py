"""A real Buildbot 4 master with the profiler's www plugin, an admin-only
authz and (optionally) ProfilerService, plus an HTTP client that logs in the
way Buildbot's UI does (basic auth on /auth/login, then the session cookie).
Built on tests/e2e_master.py's RealMaster (create-master, start, stop)."""

from __future__ import annotations

import base64
import gzip
import http.cookiejar
import json
import socket
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Optional

from e2e_master import RealMaster

USERS = {"admin": "admin-secret", "dev": "dev-secret"}

CONFIG = '''\
# written by tests/www_master.py
from buildbot.plugins import schedulers, steps, util, worker

c = BuildmasterConfig = {{}}
c["title"] = "profiler www"
c["buildbotURL"] = "http://127.0.0.1:{port}/"
c["db"] = {{"db_url": "sqlite:///state.sqlite"}}
c["protocols"] = {{"null": {{}}}}
c["buildbotNetUsageData"] = None
c["workers"] = [worker.LocalWorker("local")]
factory = util.BuildFactory([
    steps.ShellCommand(name="chatty", command=[{python!r}, "-c", "for i in range(20000): print('line', i)"]),
])
c["builders"] = [util.BuilderConfig(name="work", workernames=["local"], factory=factory)]
c["schedulers"] = [schedulers.ForceScheduler(name="force", builderNames=["work"])]
c["www"] = {{
    "port": "tcp:{port}:interface=127.0.0.1",
    "plugins": {{"profiler": {plugin!r}}},
    "auth": util.UserPasswordAuth({users!r}),
    "authz": util.Authz(
        allowRules=[util.AnyControlEndpointMatcher(role="admins")],
        roleMatchers=[util.RolesFromUsername(roles=["admins"], usernames=["admin"])],
    ),
}}
c["services"] = [{services}]
'''


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class WwwMaster(RealMaster):
    def configure_www(self, port: int, plugin: Any = True, services: str = "") -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}/"
        text = CONFIG.format(port=port, python=sys.executable, plugin=plugin, users=USERS, services=services)
        (self.basedir / "master.cfg").write_text(text)

    def client(self, user: Optional[str] = None) -> "Client":
        client = Client(self.url)
        if user is not None:
            client.login(user, USERS[user])
        return client


class Reply:
    def __init__(self, status: int, headers: Any, body: bytes):
        self.status, self.headers, self.body = status, headers, body

    def json(self) -> Any:
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Reply {self.status} {self.body[:300]!r}>"


class Client:
    """urllib with a cookie jar: one browser session."""

    def __init__(self, base: str):
        self.base = base
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def request(self, path: str, body: Any = None, content_type: str = "application/json",
                headers: Optional[dict] = None, method: Optional[str] = None, timeout: float = 30) -> Reply:
        data = None
        all_headers = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers["Content-Type"] = content_type
        req = urllib.request.Request(self.base + path, data=data, headers=all_headers, method=method)
        try:
            with self.opener.open(req, timeout=timeout) as response:
                return Reply(response.status, response.headers, response.read())
        except urllib.error.HTTPError as err:
            return Reply(err.code, err.headers, err.read())

    def get(self, path: str, **kw: Any) -> Reply:
        return self.request(path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return self.request(path, body=({} if body is None else body), method="POST", **kw)

    def login(self, user: str, password: str) -> None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        reply = self.get("auth/login", headers={"Authorization": f"Basic {token}"})
        assert reply.status == 200, reply
        me = self.get("config").body.decode()
        assert f'"username": "{user}"' in me or f'"username":"{user}"' in me, me[:500]

    def force_build(self) -> Reply:
        body = {"jsonrpc": "2.0", "method": "force", "id": 1, "params": {"builderid": 1}}
        return self.post("api/v2/forceschedulers/force", body)


def read_profile(path: Path) -> dict:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return json.load(f)


def sample_keys(doc: dict) -> list[tuple[int, tuple]]:
    """(absolute ms, (thread ident, stack as frame names, weight)) per sample."""
    frames = [name for name, _, _ in doc["frames"]]
    parent, frame = doc["stacks"]["parent"], doc["stacks"]["frame"]
    paths: dict[int, tuple] = {}

    def path_of(node: int) -> tuple:
        if node not in paths:
            up = parent[node]
            paths[node] = (path_of(up) if up >= 0 else ()) + (frames[frame[node]],)
        return paths[node]

    t = doc["meta"]["start_ms"]
    out = []
    samples = doc["samples"]
    for dt, thread, stack, weight in zip(samples["dt"], samples["thread"], samples["stack"], samples["weight"]):
        t += dt
        out.append((t, (doc["threads"][thread]["ident"], path_of(stack), weight)))
    return out
