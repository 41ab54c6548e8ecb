"""``python -m autolora``: the same as the ``autolora`` command."""

from .cli import main

main()
