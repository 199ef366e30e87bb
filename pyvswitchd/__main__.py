"""``python -m pyvswitchd``: same as the ``pyvswitchd`` console script."""

from .cli import main

main()
