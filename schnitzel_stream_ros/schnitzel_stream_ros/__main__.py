"""`python -m schnitzel_stream_ros` is the `schnitzel-stream` command."""
from schnitzel_stream_ros.cli import main

raise SystemExit(main())
