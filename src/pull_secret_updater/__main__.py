from pull_secret_updater.cli import main

raise SystemExit(main())
