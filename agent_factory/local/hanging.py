"""A TCP server on 127.0.0.1 that accepts connections and never answers: a hung provider.

For fault drills, tests and benchmarks: a provider that accepts TCP and never
speaks is the case that bounds health checks by the connect timeout.
"""

from __future__ import annotations

import socket
import threading


class HangingServer:
    """Accept every connection, read nothing, say nothing, until closed."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(64)
        self.port = self._sock.getsockname()[1]
        self._clients: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="hanging-server", daemon=True)
        self._thread.start()

    def url(self) -> str:
        return f"postgresql://agent:hang-pw@127.0.0.1:{self.port}/agent_factory"

    @property
    def accepted(self) -> int:
        """How many connections it has accepted so far."""
        return len(self._clients)

    def _accept(self) -> None:
        self._sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                client, _ = self._sock.accept()
            except (TimeoutError, OSError):
                continue
            self._clients.append(client)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        for client in self._clients:
            client.close()
        self._sock.close()

    def __enter__(self) -> HangingServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
