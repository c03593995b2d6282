"""A port on 127.0.0.1 that nothing listens on (until a test or benchmark starts a server there)."""

import socket


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
