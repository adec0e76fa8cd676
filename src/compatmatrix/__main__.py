from __future__ import annotations

import sys

from compatmatrix.cli import main

sys.exit(main())
