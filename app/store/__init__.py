"""The DynamoDB store: one table, one repository per aggregate. Only this package knows keys."""

from functools import lru_cache

from app.settings import get_settings
from app.store.accounts import Accounts
from app.store.activity import Activity
from app.store.credentials import Credentials
from app.store.jobs import Jobs
from app.store.runtimes import Runtimes
from app.store.table import Table


class Store:
    def __init__(self, table_name: str, cache_seconds: float = 0.0):
        self.table = Table(table_name)
        self.accounts = Accounts(self.table)
        self.credentials = Credentials(self.table, cache_seconds)
        self.activity = Activity(self.table)
        self.jobs = Jobs(self.table, cache_seconds)
        self.runtimes = Runtimes(self.table, cache_seconds)


@lru_cache(maxsize=1)
def get_store() -> Store:
    settings = get_settings()
    return Store(settings.table_name, settings.read_cache_seconds)
