"""``python -m hssl_cli`` runs the ``hssl`` command."""

from hssl_cli.cli.main import run

run()
