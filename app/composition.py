"""The composition root: every service, built once per process from the settings and wired to
what it uses.

Lambda keeps a process warm between invocations, so the services (and their clients, caches and
the in-process event feed) live as long as it does. Each service is built on first use, so a cold
start answering `/v1/health` imports and builds none of them. The API (as FastAPI dependencies,
app.web.deps), the Lambda entry points and the local stack all take their services from
`services()`; tests start again with `reset()`. (Past 400 lines because it names every service
and what it is built from, once: that list is the point of the module.)
"""

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from app.clock import Clock
from app.settings import Settings

if TYPE_CHECKING:
    from app.aws import AwsClients
    from app.kms import Kms
    from app.mailer import Mailer
    from app.objects import ObjectStore
    from app.queues import Queues
    from app.services.accounts import AccountService
    from app.services.activity import ActivityLog
    from app.services.api_keys import ApiKeyService
    from app.services.authentication import Authenticator
    from app.services.control import ControlChannel
    from app.services.dispatch import Dispatcher
    from app.services.event_feed import EventFeed
    from app.services.event_stream import JobEventStream
    from app.services.external_endpoints import ExternalEndpoints
    from app.services.installation_files import InstallationFiles
    from app.services.installation_servers import InstallationServers
    from app.services.installations import InstallationService
    from app.services.integrations import IntegrationService
    from app.services.jobs import JobService
    from app.services.keyring import JobSecrets, RuntimeKeyring
    from app.services.lifecycle import JobLifecycle
    from app.services.marketplace import MarketplaceService
    from app.services.matrixshell import MatrixShellService
    from app.services.model_hub import ModelHub
    from app.services.model_installations import ModelInstallations
    from app.services.model_profiles import ModelProfiles
    from app.services.model_sources import ModelSources
    from app.services.openai_gateway import OpenAiGateway
    from app.services.providers import ProviderCredentials
    from app.services.proxy import RuntimeProxy
    from app.services.rate_limits import AuthRateLimits
    from app.services.runtime_protocol import RuntimeProtocol
    from app.services.runtimes import RuntimeService
    from app.services.sandboxes import SandboxService
    from app.services.secrets import SecretBox
    from app.services.shared_tools import SharedToolService
    from app.services.ssh_audit import SshAudit
    from app.services.ssh_forwards import SshForwards
    from app.services.ssh_inventory import SshInventorySource
    from app.services.ssh_keys import SshClientKeys
    from app.services.ssh_leases import SshLeaseService
    from app.services.ssh_operations import SshOperations
    from app.services.sweeper import Sweeper
    from app.services.system import SystemService
    from app.services.trust import TrustPolicy
    from app.store import Store

Built = TypeVar("Built")


class Services:
    def __init__(self, settings: Settings, clock: Clock | None = None):
        self.settings = settings
        self.clock = clock or Clock()
        self._built: dict[str, Any] = {}
        self._lock = threading.RLock()  # re-entrant: building one service builds what it uses

    def _once(self, name: str, build: Callable[[], Built]) -> Built:
        found = self._built.get(name)
        if found is None:
            with self._lock:
                found = self._built.get(name)
                if found is None:
                    found = self._built[name] = build()
        return found

    # --- ports: AWS, mail ----------------------------------------------------------------------

    @property
    def aws(self) -> "AwsClients":
        from app.aws import AwsClients

        return self._once("aws", AwsClients)

    @property
    def store(self) -> "Store":
        from app.store import Store

        return self._once("store", lambda: Store(self.settings.table_name, self.aws, self.settings.read_cache_seconds))

    @property
    def queues(self) -> "Queues":
        from app.queues import Queues

        return self._once("queues", lambda: Queues(self.aws, self.settings))

    @property
    def kms(self) -> "Kms":
        from app.kms import Kms

        return self._once("kms", lambda: Kms(self.aws, self.settings.kms_key_alias))

    @property
    def secrets(self) -> "SecretBox":
        from app.services.secrets import SecretBox

        return self._once("secrets", lambda: SecretBox(self.kms, self.clock))

    @property
    def keyring(self) -> "RuntimeKeyring":
        from app.services.keyring import RuntimeKeyring

        return self._once("keyring", lambda: RuntimeKeyring(self.secrets))

    @property
    def job_secrets(self) -> "JobSecrets":
        from app.services.keyring import JobSecrets

        return self._once("job_secrets", lambda: JobSecrets(self.secrets, self.keyring))

    @property
    def objects(self) -> "ObjectStore":
        from app.objects import ObjectStore

        return self._once("objects", lambda: ObjectStore(self.aws, self.settings.files_bucket))

    @property
    def mailer(self) -> "Mailer":
        from app.mailer import mailer_for

        return self._once("mailer", lambda: mailer_for(self.settings, self.aws))

    @property
    def feed(self) -> "EventFeed":
        from app.services.event_feed import EventFeed

        return self._once("feed", EventFeed)

    # --- services ------------------------------------------------------------------------------

    @property
    def activity(self) -> "ActivityLog":
        from app.services.activity import ActivityLog

        return self._once("activity", lambda: ActivityLog(self.store, self.clock))

    @property
    def authenticator(self) -> "Authenticator":
        from app.services.authentication import Authenticator

        return self._once("authenticator", lambda: Authenticator(self.store, self.clock))

    @property
    def trust(self) -> "TrustPolicy":
        from app.services.trust import TrustPolicy

        return self._once("trust", lambda: TrustPolicy(self.store, self.settings))

    @property
    def accounts(self) -> "AccountService":
        from app.services.accounts import AccountService

        return self._once("accounts", lambda: AccountService(self.store, self.settings, self.mailer, self.auth_limits,
                                                             self.api_keys, self.activity, self.clock))

    @property
    def auth_limits(self) -> "AuthRateLimits":
        from app.services.rate_limits import AuthRateLimits

        return self._once("auth_limits", lambda: AuthRateLimits(self.store, self.settings, self.clock))

    @property
    def api_keys(self) -> "ApiKeyService":
        from app.services.api_keys import ApiKeyService

        return self._once("api_keys", lambda: ApiKeyService(self.store, self.trust, self.activity, self.clock))

    @property
    def dispatcher(self) -> "Dispatcher":
        from app.services.dispatch import Dispatcher

        return self._once("dispatcher", lambda: Dispatcher(self.store, self.queues, self.job_secrets, self.settings,
                                                           self.clock))

    @property
    def control(self) -> "ControlChannel":
        from app.services.control import ControlChannel

        return self._once("control", lambda: ControlChannel(self.store, self.queues, self.keyring, self.settings,
                                                            self.clock))

    @property
    def lifecycle(self) -> "JobLifecycle":
        from app.contract.messages import JobType
        from app.services.lifecycle import JobLifecycle

        closing = {JobType.ssh_run: lambda: self.ssh_audit, JobType.ssh_forward: lambda: self.ssh_audit}
        return self._once("lifecycle", lambda: JobLifecycle(self.store, self.dispatcher, self.control, self.feed,
                                                            self.activity, self.clock, closing))

    @property
    def jobs(self) -> "JobService":
        from app.services.jobs import JobService

        return self._once("jobs", lambda: JobService(self.store, self.settings, self.trust, self.job_secrets,
                                                     self.dispatcher, self.lifecycle, self.control, self.activity,
                                                     self.clock))

    @property
    def job_events(self) -> "JobEventStream":
        from app.services.event_stream import JobEventStream

        return self._once("job_events", lambda: JobEventStream(self.store, self.feed, self.settings, self.clock))

    @property
    def runtime_protocol(self) -> "RuntimeProtocol":
        from app.services.runtime_protocol import RuntimeProtocol

        return self._once("runtime_protocol", lambda: RuntimeProtocol(self.store, self.lifecycle, self.feed,
                                                                      self.clock))

    @property
    def runtimes(self) -> "RuntimeService":
        from app.services.runtimes import RuntimeService

        return self._once("runtimes", lambda: RuntimeService(self.store, self.queues, self.settings, self.trust,
                                                             self.keyring, self.dispatcher, self.lifecycle,
                                                             self.control, self.activity, self.clock))

    @property
    def sandboxes(self) -> "SandboxService":
        from app.services.sandboxes import SandboxService

        return self._once("sandboxes", lambda: SandboxService(self.store, self.settings, self.jobs, self.job_secrets,
                                                              self.control, self.feed, self.clock))

    @property
    def proxy(self) -> "RuntimeProxy":
        from app.services.proxy import RuntimeProxy

        return self._once("proxy", lambda: RuntimeProxy(self.store, self.settings, self.sandboxes, self.control,
                                                        self.keyring, self.clock))

    @property
    def matrixshell(self) -> "MatrixShellService":
        from app.services.matrixshell import MatrixShellService

        return self._once("matrixshell", lambda: MatrixShellService(self.store, self.settings, self.sandboxes,
                                                                    self.clock))

    # --- models ---------------------------------------------------------------------------------

    @property
    def providers(self) -> "ProviderCredentials":
        from app.services.providers import ProviderCredentials

        return self._once("providers", lambda: ProviderCredentials(self.store, self.secrets, self.activity,
                                                                   self.clock))

    @property
    def model_hub(self) -> "ModelHub":
        from app.services.model_hub import ModelHub

        return self._once("model_hub", lambda: ModelHub(self.settings))

    @property
    def external_endpoints(self) -> "ExternalEndpoints":
        from app.services.external_endpoints import ExternalEndpoints

        return self._once("external_endpoints", lambda: ExternalEndpoints(self.settings))

    @property
    def model_sources(self) -> "ModelSources":
        from app.services.model_sources import ModelSources

        return self._once("model_sources", lambda: ModelSources(self.model_hub, self.providers,
                                                                self.external_endpoints, self.aws))

    @property
    def model_profiles(self) -> "ModelProfiles":
        from app.services.model_profiles import ModelProfiles

        return self._once("model_profiles", lambda: ModelProfiles(self.store, self.model_sources, self.activity,
                                                                  self.clock))

    @property
    def model_installations(self) -> "ModelInstallations":
        from app.services.model_installations import ModelInstallations

        return self._once("model_installations", lambda: ModelInstallations(
            self.store, self.settings, self.jobs, self.runtimes, self.control, self.providers,
            self.external_endpoints, self.model_hub, self.activity, self.clock))

    @property
    def openai_gateway(self) -> "OpenAiGateway":
        from app.services.openai_gateway import OpenAiGateway

        return self._once("openai_gateway", lambda: OpenAiGateway(self.store, self.settings, self.control,
                                                                  self.providers, self.external_endpoints))

    @property
    def marketplace(self) -> "MarketplaceService":
        from app.services.marketplace import MarketplaceService

        return self._once("marketplace", lambda: MarketplaceService(self.store, self.settings, self.clock))

    @property
    def installation_files(self) -> "InstallationFiles":
        from app.services.installation_files import InstallationFiles

        return self._once("installation_files", lambda: InstallationFiles(self.store, self.settings, self.objects,
                                                                          self.clock))

    @property
    def installation_servers(self) -> "InstallationServers":
        from app.services.installation_servers import InstallationServers

        return self._once("installation_servers", lambda: InstallationServers(
            self.store, self.settings, self.sandboxes, self.secrets, self.installation_files, self.clock))

    @property
    def installations(self) -> "InstallationService":
        from app.services.installations import InstallationService

        return self._once("installations", lambda: InstallationService(
            self.store, self.marketplace, self.secrets, self.installation_servers, self.installation_files,
            self.activity, self.clock))

    @property
    def shared_tools(self) -> "SharedToolService":
        from app.catalog import curated_servers
        from app.services.shared_tools import SharedToolService

        def catalog() -> list:
            return [entry.document for entry in curated_servers()]

        return self._once("shared_tools", lambda: SharedToolService(self.store, self.settings, self.secrets,
                                                                    self.activity, self.clock, catalog))

    @property
    def integrations(self) -> "IntegrationService":
        from app.services.integrations import IntegrationService

        return self._once("integrations", lambda: IntegrationService(self.store, self.settings, self.activity,
                                                                     self.clock))

    @property
    def system(self) -> "SystemService":
        from app.services.system import SystemService

        return self._once("system", lambda: SystemService(self.settings, self.store, self.queues, self.kms,
                                                          self.runtimes, self.ssh_inventory, self.clock))

    # --- infra SSH -------------------------------------------------------------------------------

    @property
    def ssh_inventory(self) -> "SshInventorySource":
        from app.services.ssh_inventory import SshInventorySource

        return self._once("ssh_inventory", lambda: SshInventorySource(self.settings, self.aws, self.clock))

    @property
    def ssh_keys(self) -> "SshClientKeys":
        from app.services.ssh_keys import SshClientKeys

        return self._once("ssh_keys", lambda: SshClientKeys(self.settings, self.aws, self.kms))

    @property
    def ssh_audit(self) -> "SshAudit":
        from app.services.ssh_audit import SshAudit

        return self._once("ssh_audit", lambda: SshAudit(self.store, self.activity))

    @property
    def ssh_leases(self) -> "SshLeaseService":
        from app.services.ssh_leases import SshLeaseService

        return self._once("ssh_leases", lambda: SshLeaseService(self.store, self.settings, self.jobs, self.ssh_audit,
                                                                self.clock))

    @property
    def ssh_operations(self) -> "SshOperations":
        from app.services.ssh_operations import SshOperations

        return self._once("ssh_operations", lambda: SshOperations(
            self.store, self.settings, self.ssh_inventory, self.ssh_keys, self.ssh_leases, self.jobs, self.ssh_audit,
            self.feed, self.clock))

    @property
    def ssh_forwards(self) -> "SshForwards":
        from app.services.ssh_forwards import SshForwards

        return self._once("ssh_forwards", lambda: SshForwards(
            self.store, self.settings, self.ssh_operations, self.control, self.keyring.signing_key, self.clock))

    @property
    def sweeper(self) -> "Sweeper":
        from app.services.sweeper import Sweeper

        return self._once("sweeper", lambda: Sweeper(self.store, self.settings, self.lifecycle, self.dispatcher,
                                                     self.runtimes, self.clock))


_current: Services | None = None
_current_lock = threading.Lock()


def services() -> Services:
    """This process's services, built from the environment's settings on first use."""
    global _current
    found = _current
    if found is None:
        with _current_lock:
            if _current is None:
                _current = Services(Settings())
            found = _current
    return found


def reset() -> None:
    """Forget this process's services; the next `services()` reads the settings again and builds
    new ones (new clients, empty caches). Tests and the local stack call it after changing the
    environment."""
    global _current
    with _current_lock:
        _current = None
