"""``python -m shipway`` is the ``shipway`` command."""

from shipway.cli.main import main

main()
