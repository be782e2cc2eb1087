"""An HTTP proxy on loopback (tinyproxy, from Debian's package), for the plugin's ``HTTPS_PROXY``.

A node that reaches the token services only through a forward proxy gives the kubelet (and so
the plugin it runs) ``HTTPS_PROXY``; the proxy tunnels each TLS connection with ``CONNECT``.
The tests put tinyproxy in that place, optionally demanding a user and password
(``Proxy-Authorization: Basic``), and read from its log which tunnels it opened.
"""

from __future__ import annotations

import re
import shutil
import socket
from pathlib import Path
from urllib.parse import quote

from devstack.procs import Process, free_port, wait_until

__all__ = ["HttpProxy"]

#: How tinyproxy (LogLevel Connect) logs a request:
#: "Request (file descriptor 4): CONNECT host:port HTTP/1.1".
_REQUEST = re.compile(r"Request \(file descriptor \d+\): CONNECT (\S+) HTTP/")


class HttpProxy:
    """tinyproxy on 127.0.0.1, accepting clients from there alone, with `credentials` (user,
    password; tinyproxy's configuration takes neither with white space) required when given."""

    def __init__(
        self, workdir: Path, *, name: str = "proxy", credentials: tuple[str, str] | None = None
    ) -> None:
        binary = shutil.which("tinyproxy")
        if binary is None:
            raise FileNotFoundError("tinyproxy is not installed (hack/setup.sh installs it)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.credentials = credentials
        lines = [
            f"Port {self.port}",
            "Listen 127.0.0.1",
            "Allow 127.0.0.1",
            "Timeout 30",
            "MaxClients 50",
            "LogLevel Connect",
            # NB: no ConnectPort line, so CONNECT may reach any port (the stand-ins' are random).
        ]
        if credentials is not None:
            lines.append(f"BasicAuth {credentials[0]} {credentials[1]}")
        self.config_file = workdir / f"{name}.conf"
        self.config_file.write_text("\n".join(lines) + "\n")
        self.process = Process(name, [binary, "-d", "-c", str(self.config_file)], log_dir=workdir)

    @property
    def url(self) -> str:
        """The proxy's URL, with the user and password when it demands them."""
        if self.credentials is None:
            return f"http://127.0.0.1:{self.port}"
        user, password = (quote(part, safe="") for part in self.credentials)
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def start(self) -> HttpProxy:
        self.process.start()
        wait_until(self._listening, what="waiting for the proxy", timeout=15, process=self.process)
        return self

    def _listening(self) -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", self.port)) == 0

    def tunnels(self) -> list[str]:
        """The ``host:port`` of every CONNECT the proxy was asked for, in order."""
        text = self.process.log_path.read_text(errors="replace")
        return _REQUEST.findall(text)

    def stop(self) -> None:
        self.process.stop()

    def __enter__(self) -> HttpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
