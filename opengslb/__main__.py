"""``python -m opengslb`` is the ``opengslb`` command."""

from opengslb.cli import main

main()
