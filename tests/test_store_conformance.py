"""Every built-in store passes the public conformance suite."""

import pytest

from hug_cookie_sessions import MemoryStore, SQLiteStore
from hug_cookie_sessions.testing import StoreConformance, UserIndexConformance


class TestMemoryStore(StoreConformance, UserIndexConformance):
    @pytest.fixture
    def store(self):
        return MemoryStore()


class TestSQLiteStore(StoreConformance, UserIndexConformance):
    @pytest.fixture
    def store(self, tmp_path):
        return SQLiteStore(str(tmp_path / "sessions.sqlite3"))
