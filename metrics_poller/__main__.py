"""`python -m metrics_poller` is the `metrics-poller` command."""

from metrics_poller.cli import main

raise SystemExit(main())
