"""``python -m collab``: the same command line as the ``collab`` script."""

from collab.tools.cli import main

raise SystemExit(main())
