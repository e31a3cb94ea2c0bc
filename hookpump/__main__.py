"""`python -m hookpump` is the `hookpump` command."""

from __future__ import annotations

import sys

from hookpump.commands import main

sys.exit(main())
