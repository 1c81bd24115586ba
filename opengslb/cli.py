"""The ``opengslb`` command.

``opengslb [flags]`` runs the server exactly as ``twistd -n opengslb [flags]``
does (same options, foreground, no pid file); ``opengslb demo`` runs the
built-in demo; ``opengslb agent`` runs the backend agent.
"""

from __future__ import annotations

import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> None:
    """Entry point of the ``opengslb`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["agent"]:
        # The agent is not the server: it runs on its own reactor loop, not twistd's plugin.
        from opengslb.agent.main import run as run_agent

        run_agent(args[1:])
        return
    if args[:1] == ["demo"]:
        args = ["--demo"] + args[1:]
        print("opengslb demo: DNS on 127.0.0.1:1053, backends on 127.0.0.11-13:8081\n"
              "  try: dig @127.0.0.1 -p 1053 app.demo.test +short", flush=True)
    from twisted.scripts.twistd import run

    sys.argv = ["opengslb", "--nodaemon", "--pidfile=", "opengslb", *args]
    run()


if __name__ == "__main__":
    main()
