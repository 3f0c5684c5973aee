from gzoo.cli import main

raise SystemExit(main())
