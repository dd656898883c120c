"""``python -m hug_cookie_sessions``: the operations CLI (also installed as ``hug-sessions``)."""

from .cli import main

raise SystemExit(main())
