"""Which timeouts the front door answers itself (``head_buffering.raised_on``): only those of
the client's own socket; another connection's (the S3 store's, say) keeps gthread's handling."""

from __future__ import annotations

import socket

import pytest

from lti_exchange.serving.head_buffering import raised_on


def timeout_of(call) -> TimeoutError:
    with pytest.raises(TimeoutError) as caught:
        call()
    return caught.value


def test_a_timeout_sending_on_the_clients_socket_is_its_own():
    client, peer = socket.socketpair()
    with client, peer:
        client.settimeout(0.05)
        client.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)

        def send_until_stuck() -> None:
            while True:
                client.sendall(b"x" * 65536)

        exc = timeout_of(send_until_stuck)
        assert raised_on(exc, client)


def test_a_timeout_on_another_connection_is_not_the_clients():
    client, peer = socket.socketpair()
    store, store_peer = socket.socketpair()
    with client, peer, store, store_peer:

        def read_from_store() -> None:
            store.settimeout(0.05)
            store.recv(10)

        exc = timeout_of(read_from_store)
        assert raised_on(exc, store)
        assert not raised_on(exc, client)


def test_an_exception_without_a_traceback_is_not_the_clients():
    client, peer = socket.socketpair()
    with client, peer:
        assert not raised_on(TimeoutError("made, not raised"), client)
