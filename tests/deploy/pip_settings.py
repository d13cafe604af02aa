"""The host's pip settings, turned into what a `docker build` needs to install the same packages.

pip inside an image build sees none of the host's configuration: not its index URLs, not its local wheel
directories (here the CPU torch wheel lies in a local `find-links` folder, not on PyPI), not the CA bundle of
a TLS-intercepting proxy. This reads them the way pip does (`pip config list`, then `PIP_*` variables, which
win), and maps them onto the Dockerfile's build args:

- http(s) index URLs pass through unchanged;
- local folders (`/opt/wheels`, `file:///opt/pypi/simple`) are served read-only over HTTP on 127.0.0.1 for
  the build's lifetime (`LocalPackageServer`); the build runs with `--network host` to reach it;
- the CA bundle (`cert`) becomes the build secret `pip-ca`, never a layer or a build arg.
"""

from __future__ import annotations

import functools
import os
import re
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass, field
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlparse

# pip option -> Dockerfile build arg; the options that are lists are space-separated.
BUILD_ARG_OPTIONS = {
    "index-url": "PIP_INDEX_URL",
    "extra-index-url": "PIP_EXTRA_INDEX_URL",
    "find-links": "PIP_FIND_LINKS",
    "trusted-host": "PIP_TRUSTED_HOST",
}
CONFIG_LINE = re.compile(r"^(?P<scope>[:\w]+)\.(?P<key>[\w-]+)='(?P<value>.*)'$")


def host_pip_options() -> dict[str, str]:
    """pip's effective options from config files and the environment (environment wins), as pip sees them."""
    listed = subprocess.run(
        [sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True
    ).stdout
    options: dict[str, str] = {}
    for line in listed.splitlines():
        match = CONFIG_LINE.match(line.strip())
        if match and match["scope"] in ("global", "user", "site", "install", ":env:"):
            options[match["key"]] = match["value"]
    for name, value in os.environ.items():
        if name.startswith("PIP_") and value:
            options[name.removeprefix("PIP_").lower().replace("_", "-")] = value
    return options


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 -- stdlib signature
        """Package downloads are not worth a line each."""


@dataclass
class LocalPackageServer:
    """Serves chosen local folders over HTTP on 127.0.0.1 (each under its own `/dN/` prefix)."""

    root: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="paretorm-pip-")))
    _server: ThreadingHTTPServer | None = None

    def publish(self, folder: Path) -> str:
        """The URL prefix under which `folder` is served (one symlink per folder in the served root)."""
        for link in self.root.iterdir():
            if link.resolve() == folder.resolve():
                return f"{self.url}/{link.name}"
        link = self.root / f"d{len(list(self.root.iterdir()))}"
        link.symlink_to(folder)
        return f"{self.url}/{link.name}"

    def start(self) -> None:
        handler = functools.partial(_QuietHandler, directory=str(self.root))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        assert self._server is not None, "start() the server first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()


@dataclass(frozen=True)
class BuildPipSettings:
    """Build args and the optional CA-bundle secret for the Dockerfile's pip steps."""

    build_args: dict[str, str]
    ca_bundle: Path | None


def _map_location(value: str, server: LocalPackageServer, is_index: bool) -> str:
    """An index or find-links entry as the build can reach it: URLs as they are, local folders via HTTP.

    A local simple index (`/x/simple`) links to files relative to its parent (`../../files/...`), so the
    parent folder is published and the URL keeps the `simple` part."""
    parsed = urlparse(value)
    if parsed.scheme in ("http", "https"):
        return value
    path = Path(parsed.path if parsed.scheme == "file" else value)
    if not path.exists():
        return ""
    if is_index:
        return f"{server.publish(path.parent)}/{path.name}/"
    return f"{server.publish(path)}/"


def build_pip_settings(server: LocalPackageServer, options: dict[str, str] | None = None) -> BuildPipSettings:
    """Map the host's pip options onto build args; local folders are published on `server`."""
    options = host_pip_options() if options is None else options
    args: dict[str, str] = {}
    for option, build_arg in BUILD_ARG_OPTIONS.items():
        if option not in options:
            continue
        entries = options[option].split()
        if option != "trusted-host":
            is_index = option.endswith("index-url")
            entries = [e for e in (_map_location(v, server, is_index) for v in entries) if e]
        if entries:
            args[build_arg] = " ".join(entries)
    if any(v.startswith(server.url) for v in args.values()):
        args["PIP_TRUSTED_HOST"] = " ".join([*args.get("PIP_TRUSTED_HOST", "").split(), "127.0.0.1"])
    cert = options.get("cert")
    return BuildPipSettings(args, Path(cert) if cert and Path(cert).is_file() else None)
