"""``python -m convkit.testing.server``: the fake server on its own, for demos (private)."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a FakeChatServer that echoes the last user message, until interrupted.

    Run it with ``python -m convkit.testing.server [--port N]``.
    """
    import argparse
    import time

    from convkit.testing._replies import echo_responder
    from convkit.testing.server import FakeChatServer

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free port)")
    args = parser.parse_args(argv)
    with FakeChatServer(default_responder=echo_responder, port=args.port) as server:
        print(f"FakeChatServer listening: OPENAI_BASE_URL={server.base_url}", flush=True)
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
