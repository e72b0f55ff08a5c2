"""`python -m downstream ...` is `atst-downstream ...`."""
import sys

from downstream.cli import main

if __name__ == "__main__":
    sys.exit(main())
