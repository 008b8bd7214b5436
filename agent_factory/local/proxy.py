"""A TCP proxy on 127.0.0.1 that counts round trips and can add latency.

For tests and benchmarks: put it between the library and a local provider to
count how many times a client waits for the server (a *round trip*: the client
sends, then the server answers), or to make a loopback provider behave like a
managed one in another region (`delay` seconds added to every round trip).
"""

from __future__ import annotations

import queue
import socket
import threading
import time


class CountingProxy:
    """Forward 127.0.0.1:`port` to `target_host`:`target_port`, counting round trips.

    A round trip is counted each time a client sends after the server last
    spoke on that connection (or first sends on it). `delay` seconds are added
    to each round trip, half on the way in and half on the way out.
    """

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._round_trips = 0
        self._sockets: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="counting-proxy", daemon=True).start()

    @property
    def round_trips(self) -> int:
        """Round trips counted since the start or the last `reset()`."""
        with self._lock:
            return self._round_trips

    def reset(self) -> None:
        """Set the round-trip count back to zero."""
        with self._lock:
            self._round_trips = 0

    def close(self) -> None:
        """Stop accepting and cut every forwarded connection."""
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
        # shutdown first: a close() alone leaves a socket that a pump thread is
        # blocked on open in the kernel, and its peer (a server session) never ends.
        _shutdown(*sockets)
        for sock in sockets:
            try:
                sock.close()
            except OSError:
                pass

    def __enter__(self) -> CountingProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                if self._closed.is_set():  # closed while this client was being connected
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
            turn = {"last": "server"}  # who spoke last on this connection
            threading.Thread(target=self._pump, args=(client, server, "client", turn), daemon=True).start()
            threading.Thread(target=self._pump, args=(server, client, "server", turn), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, side: str, turn: dict[str, str]) -> None:
        """Read what `side` sends and forward it; with a delay, each chunk leaves half the delay after it came."""
        outbox: queue.SimpleQueue[tuple[float, bytes] | None] = queue.SimpleQueue()
        if self.delay:
            threading.Thread(target=self._send_later, args=(outbox, sink), daemon=True).start()
        try:
            while True:
                data = source.recv(65536)
                if not data:
                    break
                with self._lock:
                    if side == "client" and turn["last"] == "server":
                        self._round_trips += 1
                    turn["last"] = side
                if self.delay:
                    outbox.put((time.monotonic() + self.delay / 2, data))
                else:
                    sink.sendall(data)
        except OSError:
            pass
        finally:
            outbox.put(None)
            if not self.delay:
                _shutdown(source, sink)

    @staticmethod
    def _send_later(outbox: queue.SimpleQueue[tuple[float, bytes] | None], sink: socket.socket) -> None:
        """Send each chunk at its due time: a link's latency, not a delay per chunk."""
        try:
            while (item := outbox.get()) is not None:
                due, data = item
                time.sleep(max(0.0, due - time.monotonic()))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            _shutdown(sink)


def _shutdown(*sockets: socket.socket) -> None:
    for sock in sockets:
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
