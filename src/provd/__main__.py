"""python -m provd is the same as the provd console script."""

from provd.cli import main

raise SystemExit(main())
