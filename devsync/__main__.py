from devsync.cli import main

raise SystemExit(main())
