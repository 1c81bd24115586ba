"""The ``opengslb`` command.

``opengslb [flags]`` runs the server exactly as ``twistd -n opengslb [flags]``
does (same options, foreground, no pid file); ``opengslb demo`` runs the
built-in demo; ``opengslb agent`` runs the backend agent; ``opengslb ctl``
operates a running server through its API.
"""

from __future__ import annotations

import os
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
    if args[:1] == ["ctl"]:
        from opengslb.ctl import main as run_ctl

        sys.exit(run_ctl(args[1:]))
    if args[:1] == ["demo"]:
        args = ["--demo"] + args[1:]
        print("opengslb demo: DNS on 127.0.0.1:1053, backends on 127.0.0.11-13:8081, "
              "status page on http://127.0.0.1:8080/\n"
              "  try: dig @127.0.0.1 -p 1053 app.demo.test +short", flush=True)
    _find_plugin()
    from twisted.scripts.twistd import run

    sys.argv = ["opengslb", "--nodaemon", "--pidfile=", "opengslb", *args]
    run()


def _find_plugin() -> None:
    """Let twistd find ``twisted/plugins/opengslb_plugin.py`` beside the package.

    A normal install puts the plugin into Twisted's own plugin directory; an
    editable install leaves it in the source tree, which plugin discovery
    (a directory listing of ``twisted.plugins.__path__``) sees only when the
    tree is the working directory.
    """
    import opengslb
    import twisted.plugins

    here = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(opengslb.__file__))),
                        "twisted", "plugins")
    if os.path.isfile(os.path.join(here, "opengslb_plugin.py")) and here not in twisted.plugins.__path__:
        twisted.plugins.__path__.append(here)


if __name__ == "__main__":
    main()
