"""`python -m sandboxes serve ...`: run a sandbox CRM from the command line."""

from __future__ import annotations

import sys

from sandboxes import main

if __name__ == "__main__":
    sys.exit(main())
