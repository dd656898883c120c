"""The test app as two gunicorn instances serve it in ``test_app_servers.py``, on PostgreSQL.

Configured by the environment: ``SESSION_STORE`` (a ``postgresql://`` URL), ``SESSION_PREFIX``
(the table prefix) and ``SESSION_SECRET``. Plain HTTP on loopback, hence ``cookie_secure=False``.
"""

import os

from hug_cookie_sessions import PostgresStore, SessionMiddleware

from .apps import build_app

store = PostgresStore(os.environ["SESSION_STORE"], table_prefix=os.environ["SESSION_PREFIX"])
app = build_app(SessionMiddleware(os.environ["SESSION_SECRET"], store, cookie_secure=False))
