"""Entry point for `python -m connector`."""

from __future__ import annotations

from connector.cli.main import main

raise SystemExit(main())
