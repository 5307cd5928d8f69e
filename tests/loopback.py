"""The HTTP servers of the test fakes (GitHub, the Kubernetes API, a scripted DiracX): each a
ThreadingHTTPServer on 127.0.0.1 at a free port, served by a daemon thread, shut down and closed
on exit, so that no fake leaves a thread or a socket behind."""

from __future__ import annotations

import ctypes
import os
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TypeVar

T = TypeVar("T")
CLONE_NEWNET = 0x40000000


class LoopbackServer:
    """One fake's server: `start()`, `url`, `stop()`.

    `netns`: listen in that network namespace (/run/netns/<name>) instead of the test's own;
    where a lab test's commands run (`ip netns exec`), 127.0.0.1 is that namespace's loopback.
    `tls`: serve HTTPS with that server-side context (the handshake, and the client
    certificate check it may require, happen in the handler's thread, so a client that fails
    it never stalls the server).
    """

    def __init__(self, handler: type[BaseHTTPRequestHandler], *, netns: str | None = None,
                 poll_interval: float = 0.5, tls: ssl.SSLContext | None = None) -> None:  # fmt: skip
        def make() -> ThreadingHTTPServer:
            return ThreadingHTTPServer(("127.0.0.1", 0), handler)

        self.server = make() if netns is None else in_netns(netns, make)
        self.tls = tls
        if tls is not None:
            self.server.socket = tls.wrap_socket(self.server.socket, server_side=True,
                                                 do_handshake_on_connect=False)  # fmt: skip
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": poll_interval}, daemon=True)  # fmt: skip

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=10)


def in_netns(netns: str, make: Callable[[], T]) -> T:
    """`make()` run in a thread that joined network namespace `netns` first: the sockets it
    opens stay in that namespace (setns changes only the calling thread's)."""
    made: list[T] = []
    failed: list[BaseException] = []

    def run() -> None:
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
            try:
                if libc.setns(fd, CLONE_NEWNET) != 0:
                    errno = ctypes.get_errno()
                    raise OSError(errno, f"setns into {netns}: {os.strerror(errno)}")
            finally:
                os.close(fd)
            made.append(make())
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(timeout=30)
    if failed:
        raise failed[0]
    return made[0]
