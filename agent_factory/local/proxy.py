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
    spoke on that connection (or first sends on it); bytes are counted each
    way. `delay` seconds are added to each round trip, half on the way in and
    half on the way out.
    """

    def __init__(self, target_host: str, target_port: int, *, delay: float = 0.0) -> None:
        self.target = (target_host, target_port)
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._round_trips = 0
        self._bytes = {"client": 0, "server": 0}
        self._sockets: list[socket.socket] = []
        self._pumps: list[threading.Thread] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, name="counting-proxy", daemon=True).start()

    @property
    def round_trips(self) -> int:
        """Round trips counted since the start or the last `reset()`."""
        with self._lock:
            return self._round_trips

    @property
    def bytes_to_server(self) -> int:
        """Bytes clients sent through the proxy since the start or the last `reset()`."""
        with self._lock:
            return self._bytes["client"]

    @property
    def bytes_to_client(self) -> int:
        """Bytes the server sent back through the proxy since the start or the last `reset()`."""
        with self._lock:
            return self._bytes["server"]

    def reset(self) -> None:
        """Set the round-trip and byte counts back to zero."""
        with self._lock:
            self._round_trips = 0
            self._bytes = {"client": 0, "server": 0}

    def close(self) -> None:
        """Stop accepting and cut every forwarded connection: both peers see it closed (FIN), none hangs.

        Sockets are shut down first, which wakes the threads blocked reading
        them, and closed once those threads are done: closing a socket another
        thread still reads would keep it open and could hand its number to a
        new socket.
        """
        self._closed.set()
        self._listener.close()
        with self._lock:
            sockets, self._sockets = self._sockets, []
            pumps, self._pumps = self._pumps, []
        _shutdown(*sockets)
        for pump in pumps:
            pump.join(timeout=5)
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
            turn = {"last": "server"}  # who spoke last on this connection
            pumps = [threading.Thread(target=self._pump, args=(client, server, "client", turn), daemon=True),
                     threading.Thread(target=self._pump, args=(server, client, "server", turn), daemon=True)]
            with self._lock:
                if self._closed.is_set():  # close() ran while this connection was being made
                    client.close()
                    server.close()
                    return
                self._sockets += [client, server]
                self._pumps += pumps
            for pump in pumps:
                pump.start()

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
                    self._bytes[side] += len(data)
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
