"""The test network (tests/support/netproxy.py) over real sockets: a TCP echo server behind the proxy."""

from __future__ import annotations

import socket
import socketserver
import statistics
import threading
import time
from collections.abc import Iterator

import pytest

from tests.support.netproxy import CutMode, Direction, NetProxy


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        server = self.server
        assert isinstance(server, EchoServer)
        server.accepted += 1
        while data := self.request.recv(65536):
            self.request.sendall(data)


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Echo)
        self.accepted = 0
        self.port = int(self.server_address[1])


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def connect(proxy: NetProxy, timeout_s: float = 5.0) -> socket.socket:
    return socket.create_connection((proxy.host, proxy.port), timeout=timeout_s)


def round_trip(sock: socket.socket, payload: bytes = b"ping") -> float:
    started = time.monotonic()
    sock.sendall(payload)
    got = b""
    while len(got) < len(payload):
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        got += chunk
    assert got == payload
    return (time.monotonic() - started) * 1000


def test_delay_each_way_adds_up_to_the_round_trip(echo: EchoServer) -> None:
    with NetProxy("127.0.0.1", echo.port, delay_up_ms=50, delay_down_ms=50) as proxy, connect(proxy) as sock:
        rtts = [round_trip(sock, f"ping {i}".encode()) for i in range(20)]
        assert 100 <= statistics.median(rtts) < 130, rtts
        assert min(rtts) >= 100, rtts
        assert proxy.counters.bytes_up == proxy.counters.bytes_down == sum(len(f"ping {i}") for i in range(20))
        proxy.set_impairment(delay_up_ms=0, delay_down_ms=0)
        time.sleep(0.05)
        assert statistics.median(round_trip(sock) for _ in range(20)) < 20


def test_delay_does_not_limit_throughput_to_one_read_per_round_trip(echo: EchoServer) -> None:
    total = 16 * 1024 * 1024
    with NetProxy("127.0.0.1", echo.port, delay_up_ms=50, delay_down_ms=50) as proxy, connect(proxy) as sock:
        received = 0

        def reader() -> None:
            nonlocal received
            while received < total:
                chunk = sock.recv(1 << 20)
                if not chunk:
                    return
                received += len(chunk)

        thread = threading.Thread(target=reader)
        started = time.monotonic()
        thread.start()
        block = b"x" * (1 << 20)
        for _ in range(total // len(block)):
            sock.sendall(block)
        thread.join(30)
        elapsed = time.monotonic() - started
    assert received == total
    # One 64 KiB read per 100 ms would take 25 s; a 4 MiB window per direction moves 16 MiB in ~4-5 RTTs.
    assert elapsed < 3.0, f"{total} bytes took {elapsed:.2f} s through a 100 ms RTT"
    assert proxy.counters.bytes_up == proxy.counters.bytes_down == total


def test_blackhole_passes_nothing_keeps_connections_open_and_restore_delivers(echo: EchoServer) -> None:
    with NetProxy("127.0.0.1", echo.port) as proxy, connect(proxy, timeout_s=0.5) as sock:
        round_trip(sock)
        proxy.cut(CutMode.BLACKHOLE)
        sock.sendall(b"during the cut")
        with pytest.raises(TimeoutError):
            sock.recv(100)  # no answer, no reset: only a keep-alive would notice
        # A new connection gets no answer either (its "SYN vanished"); it is not refused.
        late = connect(proxy, timeout_s=0.5)
        late.sendall(b"hello?")
        with pytest.raises(TimeoutError):
            late.recv(100)
        assert echo.accepted == 1
        up_before = proxy.counters.bytes_up
        time.sleep(0.5)
        assert proxy.counters.bytes_up == up_before == len(b"ping")
        proxy.restore()
        sock.settimeout(5)
        late.settimeout(5)
        assert sock.recv(100) == b"during the cut"  # in flight across the outage, delivered after it
        assert late.recv(100) == b"hello?"
        assert echo.accepted == 2
        assert round_trip(sock) < 50
        late.close()
    assert proxy.counters.connections_accepted == 2
    assert proxy.counters.connections_refused == 0


def test_one_way_blackhole_delivers_the_other_way(echo: EchoServer) -> None:
    with NetProxy("127.0.0.1", echo.port) as proxy, connect(proxy, timeout_s=0.5) as sock:
        round_trip(sock)
        proxy.cut(CutMode.BLACKHOLE, Direction.DOWN)  # the return path is lost
        sock.sendall(b"one way")
        time.sleep(0.2)
        assert proxy.counters.bytes_up == len(b"ping") + len(b"one way")  # reached the server
        with pytest.raises(TimeoutError):
            sock.recv(100)  # its echo does not come back
        proxy.restore()
        sock.settimeout(5)
        assert sock.recv(100) == b"one way"
    with pytest.raises(ValueError):
        proxy.cut(CutMode.RESET, Direction.UP)


def test_connection_that_gave_up_during_a_blackhole_never_reaches_the_target(echo: EchoServer) -> None:
    with NetProxy("127.0.0.1", echo.port) as proxy:
        proxy.cut(CutMode.BLACKHOLE)
        with connect(proxy) as sock:
            sock.sendall(b"CONNECT")
        time.sleep(0.2)  # the proxy sees the client's FIN (still inside the outage)
        proxy.restore()
        time.sleep(0.3)
        assert echo.accepted == 0
        assert proxy.counters.bytes_up == 0
        assert proxy.counters.connections_reset == 1
        with connect(proxy) as sock:
            round_trip(sock)
        assert echo.accepted == 1


def test_reset_cut_resets_open_connections_and_refuses_new_ones(echo: EchoServer) -> None:
    with NetProxy("127.0.0.1", echo.port) as proxy:
        sock = connect(proxy)
        round_trip(sock)
        proxy.cut(CutMode.RESET)
        with pytest.raises(ConnectionResetError):
            sock.sendall(b"x")
            sock.recv(100)
        sock.close()
        for _ in range(3):
            # The proxy accepts and resets at once: the reset may already arrive while connecting.
            with pytest.raises(ConnectionResetError), connect(proxy) as refused:
                refused.sendall(b"x")
                refused.recv(100)
        assert proxy.counters.connections_refused == 3
        assert proxy.counters.connections_reset == 1
        proxy.restore()
        with connect(proxy) as sock:
            round_trip(sock)
        assert echo.accepted == 2
        assert proxy.open_connections == 1 or proxy.open_connections == 0


def test_loss_stalls_the_stream_in_order_and_loses_no_byte(echo: EchoServer) -> None:
    with NetProxy("127.0.0.1", echo.port, delay_up_ms=5, delay_down_ms=5, loss=0.2, rto_ms=100,
                  seed=7) as proxy, connect(proxy) as sock:
        rtts = [round_trip(sock, f"message {i:04d}".encode()) for i in range(60)]
        assert proxy.counters.stalls > 0
        assert max(rtts) >= 100  # a stall costs one retransmission timeout
        assert statistics.median(rtts) < 100


def test_random_resets_drop_connections(echo: EchoServer) -> None:
    with NetProxy("127.0.0.1", echo.port, resets_per_s=5.0, seed=3) as proxy:
        drops = 0
        deadline = time.monotonic() + 10
        while drops < 3 and time.monotonic() < deadline:
            with connect(proxy) as sock:
                try:
                    while True:
                        round_trip(sock)
                        time.sleep(0.02)
                except (ConnectionError, AssertionError):
                    drops += 1
        assert drops == 3
        assert proxy.counters.connections_reset >= 3
