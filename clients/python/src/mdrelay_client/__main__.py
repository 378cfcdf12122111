"""``python -m mdrelay_client``: the same command line as the ``mdrelay-client`` script."""

from .cli import run

run()
