from webui.app.cli import main

raise SystemExit(main())
