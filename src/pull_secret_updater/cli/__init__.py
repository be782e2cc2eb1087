"""The ``pull-secret-updater`` command line: the edge where people and the controller meet.

``main`` is the one public name (the console script and ``python -m pull_secret_updater``).
Inside: ``commands`` dispatches and turns every failure into one line and an exit status,
``helpers`` holds the commands for the people who install the controller, ``flags`` maps the
settings to flags, and ``reference`` renders them as the README's table.
"""

from pull_secret_updater.cli.commands import main

__all__ = ["main"]
