"""Run the checker: python -m anomalies PATH [--require MODEL] [--out PATH]."""

from __future__ import annotations

import sys

from anomalies.cli import main

sys.exit(main())
