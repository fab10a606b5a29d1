"""``python -m convkit.cli``: the ``convkit`` command."""

from __future__ import annotations

import sys

from convkit.cli import main

sys.exit(main())
