"""TCP_NODELAY on listeners only, inherited by the connections they accept (real sockets)."""

import os
import socket

from mlflow_hokusai_plugin.server.tcp_nodelay import enable_tcp_nodelay_on_listeners


def nodelay(sock: socket.socket) -> bool:
    return sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0


def test_listeners_get_it_connections_and_others_do_not():
    bound = socket.socket(socket.AF_INET)  # as uvicorn binds it: proto 0, bound, not yet listening
    bound.bind(("127.0.0.1", 0))
    listening = socket.socket(socket.AF_INET)
    listening.bind(("127.0.0.1", 0))
    listening.listen()
    client = socket.create_connection(listening.getsockname())
    client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
    unbound = socket.socket(socket.AF_INET)
    pair = socket.socketpair()
    sockets = [bound, listening, client, unbound, *pair]
    try:
        done = enable_tcp_nodelay_on_listeners()
        assert {bound.fileno(), listening.fileno()} <= set(done)
        assert client.fileno() not in done and unbound.fileno() not in done
        assert nodelay(bound) and nodelay(listening) and not nodelay(client) and not nodelay(unbound)
        # A connection accepted later inherits it: what stops the 40 ms stall.
        bound.listen()
        outgoing = socket.create_connection(bound.getsockname())
        accepted, _ = bound.accept()
        sockets += [outgoing, accepted]
        assert nodelay(accepted)
        for sock in sockets:
            os.fstat(sock.fileno())  # nothing was closed
    finally:
        for sock in sockets:
            sock.close()
