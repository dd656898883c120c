"""The test app as two gunicorn instances serve it in ``test_app_servers.py``.

Configured by the environment: ``REDIS_URL``, ``SESSION_PREFIX`` and ``SESSION_SECRET``.
Plain HTTP on loopback, hence ``cookie_secure=False``.
"""

import os

from hug_cookie_sessions import RedisStore, SessionMiddleware

from .apps import build_app

store = RedisStore(os.environ["REDIS_URL"], prefix=os.environ["SESSION_PREFIX"])
app = build_app(SessionMiddleware(os.environ["SESSION_SECRET"], store, cookie_secure=False))
