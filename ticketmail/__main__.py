"""`python -m ticketmail` runs the command line."""

import sys

from ticketmail.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
