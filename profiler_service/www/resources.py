"""Twisted web resources of the viewer, written once for both mounts: the
standalone ``bbprofiler`` server (at ``/``) and the Buildbot www plugin (at
``/plugins/profiler/``). Each resource is built from a ``ProfileCatalog`` (the
served paths); there is no module-level state.

    GET api/profiles          JSON list: name, format, time range, size, samples
                              (newest first; a malformed file carries "error")
    GET api/profiles/<name>   the file: a .json.gz with Content-Encoding: gzip
                              and type application/json (the browser inflates
                              it), a 1.x .json as is; ?download=1 sends the
                              bytes as an attachment instead
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Iterable

from twisted.internet import threads
from twisted.python import log
from twisted.web import resource, server, static

from profiler_service.www import STATIC_DIR
from profiler_service.www.listing import ProfileCatalog, ProfileFile


def json_body(request: server.Request, value: Any, code: int = 200) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json; charset=utf-8")
    request.setHeader(b"cache-control", b"no-store")
    return json.dumps(value).encode()


class JsonError(resource.Resource):
    isLeaf = True

    def __init__(self, code: int, message: str):
        super().__init__()
        self.code, self.message = code, message

    def render(self, request: server.Request) -> bytes:
        return json_body(request, {"error": self.message}, self.code)


def not_found(name: str) -> resource.Resource:
    return JsonError(404, f"no such profile: {name!r}")


class ProfileFileResource(static.File):
    """One listed file, never a directory; nothing below it."""

    isLeaf = True

    def __init__(self, profile: ProfileFile, download: bool):
        super().__init__(profile.path)
        self.profile = profile
        self.download = download
        if download:
            # Raw bytes for saving: no transparent inflation by the browser.
            self.contentEncodings = {}
            self.type = "application/gzip" if profile.name.endswith(".gz") else "application/json"
            self.encoding = None

    def render_GET(self, request: server.Request) -> Any:
        if request.postpath and request.postpath != [b""]:
            return not_found(self.profile.name).render(request)
        request.setHeader(b"cache-control", b"no-cache")
        if self.download:
            safe_name = re.sub(r"[^\w.-]", "_", self.profile.name, flags=re.ASCII)
            request.setHeader(b"content-disposition", f'attachment; filename="{safe_name}"'.encode())
        return super().render_GET(request)

    def directoryListing(self) -> resource.Resource:  # never reached: files only
        return not_found(self.profile.name)


class ProfilesResource(resource.Resource):
    """``profiles``: the listing, and one child per listed file name."""

    def __init__(self, catalog: ProfileCatalog):
        super().__init__()
        self.catalog = catalog

    def render_GET(self, request: server.Request) -> Any:
        gone = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))

        def reply(body: bytes) -> None:
            if not gone:  # the client may have left while we read the files
                request.write(body)
                request.finish()

        def failed(failure: Any) -> None:
            log.err(failure, "bbprofiler: listing profiles failed")
            reply(json_body(request, {"error": f"listing failed: {failure.getErrorMessage()}"}, 500))

        def body(entries: list) -> dict:
            # A catalog may name the files the page opens merged (bbprofiler --from/--to).
            selected = getattr(self.catalog, "selected", None)
            return {"profiles": entries, **({"selected": selected(entries)} if selected else {})}

        d = threads.deferToThread(self.catalog.listing)
        d.addCallback(lambda entries: reply(json_body(request, body(entries))))
        d.addErrback(failed)
        return server.NOT_DONE_YET

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        if path == b"":
            return self
        try:
            name = path.decode("utf-8")
        except UnicodeDecodeError:
            return not_found(repr(path))
        # Only a listed base name resolves: "..", "a/b" (from %2f), "" and
        # absolute paths are never base names of listed files.
        if name != os.path.basename(name) or name in (".", ".."):
            return not_found(name)
        profile = self.catalog.resolve(name)
        if profile is None:
            return not_found(name)
        download = request.args.get(b"download", [b""])[0] in (b"1", b"true")
        return ProfileFileResource(profile, download)


class ApiResource(resource.Resource):
    """``api``: the JSON API; the www plugin adds its control children here."""

    def __init__(self, catalog: ProfileCatalog):
        super().__init__()
        self.catalog = catalog
        self.putChild(b"profiles", ProfilesResource(catalog))

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        return JsonError(404, f"no such API endpoint: {path.decode('utf-8', 'replace')!r}")


class MissingViewer(resource.Resource):
    isLeaf = True

    def render_GET(self, request: server.Request) -> bytes:
        request.setResponseCode(503)
        request.setHeader(b"content-type", b"text/plain; charset=utf-8")
        return (
            b"The viewer page is not built. From a source checkout run scripts/build-viewer "
            b"(needs node and npm), then restart bbprofiler. The API is at api/profiles.\n"
        )


class StaticFiles(static.File):
    """The built page; no directory listings."""

    def getChild(self, path: bytes, request: server.Request) -> resource.Resource:
        if b"\0" in path:  # /%00: no file has such a name (stat() would raise)
            return resource.NoResource()
        return super().getChild(path, request)

    def directoryListing(self) -> resource.Resource:
        return resource.NoResource()

    def createSimilarFile(self, path: str) -> static.File:
        f = StaticFiles(path, self.defaultType, self.ignoredExts, self.registry)
        f.processors, f.indexNames = self.processors, self.indexNames[:]
        f.childNotFound = self.childNotFound
        return f


def viewer_root(paths: Iterable[str], static_dir: str = STATIC_DIR,
                catalog: ProfileCatalog | None = None) -> resource.Resource:
    """The whole viewer (page + API) for the given files and directories
    (or for catalog, when given)."""
    catalog = catalog if catalog is not None else ProfileCatalog(paths)
    if os.path.isfile(os.path.join(static_dir, "index.html")):
        root: resource.Resource = StaticFiles(static_dir)
    else:
        root = resource.Resource()
        root.putChild(b"", MissingViewer())
    root.putChild(b"api", ApiResource(catalog))
    return root
