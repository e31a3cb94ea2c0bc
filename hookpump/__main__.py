"""`python -m hookpump` is the `hookpump` command."""

from __future__ import annotations

import sys

from hookpump.cli import main

sys.exit(main())
