"""The `ticketmail` command line, one module per command group."""

from ticketmail.cli.main import main

__all__ = ["main"]
