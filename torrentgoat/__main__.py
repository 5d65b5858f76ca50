"""``python -m torrentgoat``."""

from torrentgoat.cli import main

raise SystemExit(main())
