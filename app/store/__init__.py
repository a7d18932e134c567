"""The DynamoDB store: one table, one repository per aggregate. Only this package knows keys
(`keys.py` writes the layout down); repositories take and return the records of `app.domain`."""

from app.aws import AwsClients
from app.store.accounts import Accounts
from app.store.activity import Activity
from app.store.credentials import Credentials
from app.store.infra_ssh import SshLeases
from app.store.installations import Installations
from app.store.integrations import Integrations
from app.store.jobs import Jobs
from app.store.limits import RateCounters
from app.store.marketplace import Marketplace
from app.store.models import Models
from app.store.replies import Replies
from app.store.runtimes import Runtimes
from app.store.shared_tools import SharedTools
from app.store.table import Table


class Store:
    def __init__(self, table_name: str, clients: AwsClients, cache_seconds: float = 0.0):
        self.table = Table(table_name, clients)
        self.accounts = Accounts(self.table)
        self.credentials = Credentials(self.table, cache_seconds)
        self.activity = Activity(self.table)
        self.jobs = Jobs(self.table, cache_seconds)
        self.limits = RateCounters(self.table)
        self.replies = Replies(self.table)
        self.runtimes = Runtimes(self.table, cache_seconds)
        self.models = Models(self.table, cache_seconds)
        self.marketplace = Marketplace(self.table, cache_seconds)
        self.installations = Installations(self.table, cache_seconds)
        self.shared_tools = SharedTools(self.table)
        self.integrations = Integrations(self.table)
        self.ssh_leases = SshLeases(self.table)
