"""Installations: a marketplace entry installed for a workspace, or for one user of it when the
entry is per-user (each user connects their own account), with its configuration checked against
what the entry declares and its secret values sealed.

Who a per-user installation belongs to: the signed-in user, or for an API key the user named by
`X-User-Id` (the key acts for the workspace's users), else the key's own user. Another user of the
workspace sees it listed but cannot use, change or delete it (404): it holds its user's
credentials. A per-user entry's required secrets may be left out: the installation then records
that the user's OAuth sign-in must supply them (`needs_oauth`).
"""

from typing import Any

from anyio import to_thread

from app.auth.principal import Principal
from app.clock import Clock
from app.domain.installations import (
    ConfigInput,
    ConfigProblem,
    Installation,
    resolve_config,
    secret_hint,
)
from app.errors import ConditionFailed, Conflict, NotFound, Unprocessable
from app.ids import new_id
from app.schemas.sandboxes import ToolView
from app.services.activity import ActivityLog
from app.services.installation_files import InstallationFiles, Upload
from app.services.installation_servers import SECRET_KIND, InstallationServers
from app.services.marketplace import InstallKind, MarketplaceService, install_target, target_inputs
from app.services.secrets import SecretBox
from app.store import Store
from app.store.table import Page


def acting_user(principal: Principal, named: str | None) -> str | None:
    """Whom a request acts for (Principal.acting_for), or None for a key that names no user and
    has none of its own: it may install entries that are not per user."""
    if principal.kind != "session" and not (named or principal.user_id):
        return None
    return principal.acting_for(named)


class InstallationService:
    def __init__(self, store: Store, marketplace: MarketplaceService, secrets: SecretBox,
                 servers: InstallationServers, files: InstallationFiles, activity: ActivityLog, clock: Clock):
        self.store = store
        self.marketplace = marketplace
        self.secrets = secrets
        self.servers = servers
        self.files = files
        self.activity = activity
        self.clock = clock

    def install(self, principal: Principal, entry_id: str, config: dict[str, str | None], *,
                kind: InstallKind | None, user_id: str | None) -> Installation:
        entry = self.marketplace.entry(entry_id)
        document = self.marketplace.document(entry)
        installation_kind, target = install_target(document, kind)
        target_document = target.model_dump(mode="json", by_alias=True, exclude_none=True)
        per_user = document.berth.per_user
        if per_user and user_id is None:
            raise Unprocessable(f"{entry_id} is installed per user: sign in, or name the user with X-User-Id")
        try:
            resolved = resolve_config(target_inputs(installation_kind, target_document), config, per_user=per_user)
        except ConfigProblem as error:
            raise Unprocessable(str(error)) from error
        now = self.clock.iso()
        installation = Installation(
            installation_id=new_id("ins"), workspace_id=principal.workspace_id, entry_id=entry.entry_id,
            entry_version=entry.version, origin=entry.origin, title=document.display_name, kind=installation_kind,
            target=target_document, config=resolved.public,
            secret_hints={name: secret_hint(value) for name, value in resolved.secret.items()},
            secrets=self._seal(principal.workspace_id, resolved.secret), pending=resolved.pending,
            scope="user" if per_user else "workspace", user_id=user_id if per_user else None,
            needs_network=document.berth.needs_network, created_at=now, created_by=principal.subject_id,
            updated_at=now)
        audit = self.activity.audit_write(principal.workspace_id, "installation.create", actor=principal.subject_id,
                                          target=installation.installation_id, detail={"entry": entry.entry_id})
        self.store.table.transact([self.store.installations.create(installation), audit])
        self.activity.logged("installation.create", principal.subject_id, installation.installation_id)
        return installation

    def _seal(self, workspace_id: str, values: dict[str, str]) -> str | None:
        return self.secrets.seal(values, kind=SECRET_KIND, workspace_id=workspace_id) if values else None

    def get(self, principal: Principal, installation_id: str, user_id: str | None, *, cached: bool = False
            ) -> Installation:
        """One the caller may use; NotFound for any other (another workspace's, another user's)."""
        installations = self.store.installations
        found = (installations.for_routing if cached else installations.get)(principal.workspace_id, installation_id)
        if found is None or not found.usable_by(user_id):
            raise NotFound(f"no installation {installation_id}")
        return found

    def page(self, principal: Principal, *, limit: int, cursor: str | None, user_id: str | None
             ) -> Page[Installation]:
        return self.store.installations.page(principal.workspace_id, limit=limit, cursor=cursor, user_id=user_id)

    def inputs(self, installation: Installation) -> list[ConfigInput]:
        return target_inputs(installation.kind, installation.target)

    def update(self, principal: Principal, installation_id: str, changes: dict[str, str | None], user_id: str | None
               ) -> tuple[Installation, bool]:
        """New values (None removes one); a running server restarts with them. The installation,
        and whether its server restarted."""
        installation = self.get(principal, installation_id, user_id)
        try:
            resolved = resolve_config(self.inputs(installation), changes, public=installation.config,
                                      secret=self.servers.secret_values(installation),
                                      per_user=installation.scope == "user")
        except ConfigProblem as error:
            raise Unprocessable(str(error)) from error
        installation = self.store.installations.change(
            installation, config=resolved.public, secrets=self._seal(installation.workspace_id, resolved.secret),
            secret_hints={name: secret_hint(value) for name, value in resolved.secret.items()},
            pending=resolved.pending, updated_at=self.clock.iso())
        self.activity.audit(principal.workspace_id, "installation.update", actor=principal.subject_id,
                            target=installation_id, detail={"changed": sorted(changes)})
        restarted = self.servers.restart(principal, installation)
        return self.store.installations.get(installation.workspace_id, installation_id) or installation, restarted

    def add_files(self, principal: Principal, installation_id: str, uploads: list[Upload], user_id: str | None
                  ) -> tuple[Installation, bool]:
        """Store the files; a running server restarts to see them. The installation, and whether it restarted."""
        installation = self.get(principal, installation_id, user_id)
        if installation.kind != "package":
            raise Conflict("a remote installation runs no server of berth's to give files to")
        files = self.files.store_all(installation, uploads)
        installation = self.store.installations.change(installation, files=files, updated_at=self.clock.iso())
        self.activity.audit(principal.workspace_id, "installation.files", actor=principal.subject_id,
                            target=installation_id, detail={"files": [upload.name for upload in uploads]})
        restarted = self.servers.restart(principal, installation)
        return self.store.installations.get(installation.workspace_id, installation_id) or installation, restarted

    def delete(self, principal: Principal, installation_id: str, user_id: str | None) -> None:
        """Stop its server, remove its files and its sealed values with it."""
        installation = self.servers.stop(principal, self.get(principal, installation_id, user_id))
        self.files.remove_all(installation)
        if not self.store.installations.delete(installation):
            raise NotFound(f"no installation {installation_id}")
        self.activity.audit(principal.workspace_id, "installation.delete", actor=principal.subject_id,
                            target=installation_id)

    # --- its server -------------------------------------------------------------------------------

    async def tools(self, principal: Principal, installation_id: str, user_id: str | None, wait_seconds: float
                    ) -> list[ToolView]:
        installation = await to_thread.run_sync(lambda: self.get(principal, installation_id, user_id))
        return await self.servers.tools(principal, installation, wait_seconds)

    async def call(self, principal: Principal, installation_id: str, user_id: str | None, name: str,
                   arguments: dict[str, Any]) -> dict[str, Any]:
        """A call through a briefly cached view of the installation; if that named a server that has
        since stopped, once more from fresh reads."""
        installation = await to_thread.run_sync(lambda: self.get(principal, installation_id, user_id, cached=True))
        try:
            return await self.servers.call(principal, installation, name, arguments)
        except (Conflict, NotFound) as refused:
            if isinstance(refused, ConditionFailed) or installation.sandbox_id is None:
                raise
            fresh = await to_thread.run_sync(self._fresh, principal, installation, user_id)
            if fresh is None:
                raise
            return await self.servers.call(principal, fresh, name, arguments)

    def _fresh(self, principal: Principal, cached: Installation, user_id: str | None) -> Installation | None:
        """The installation read again, when the cached one named a server that is gone (else None:
        the refusal stands)."""
        workspace_id, sandbox_id = cached.workspace_id, cached.sandbox_id or ""
        self.store.installations.forget(workspace_id, cached.installation_id)
        self.store.jobs.forget(workspace_id, sandbox_id)
        fresh = self.get(principal, cached.installation_id, user_id)
        job = self.store.jobs.get(workspace_id, sandbox_id)
        stale = fresh.sandbox_id != sandbox_id or job is None or job.is_final
        return fresh if stale else None
