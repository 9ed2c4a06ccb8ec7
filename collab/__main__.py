from collab.tools.cli import main

raise SystemExit(main())
