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
    def __init__(self, table_name: str):
        self.table = Table(table_name)
        self.accounts = Accounts(self.table)
        self.credentials = Credentials(self.table)
        self.activity = Activity(self.table)
        self.jobs = Jobs(self.table)
        self.runtimes = Runtimes(self.table)


@lru_cache(maxsize=1)
def get_store() -> Store:
    return Store(get_settings().table_name)
