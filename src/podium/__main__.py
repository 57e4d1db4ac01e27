"""``python -m podium`` is the ``podium`` command."""

from podium.cli.main import main

main()
