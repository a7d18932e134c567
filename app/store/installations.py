"""Installations, in their workspace's partition (`INST#<id>`; ids are time-ordered).

Every change is conditional on the version read, so two changes at once never lose one (the
loser sees ConditionFailed and reads again). Reads for routing a tool call are cached briefly:
a stale one names a server that has since stopped, which the runtime answers as not running.
"""

from dataclasses import asdict
from typing import Any

from app.domain.installations import Installation, InstalledFile
from app.store import keys
from app.store.cache import TtlCache
from app.store.records import attributes, record
from app.store.table import Condition, Page, Table, Write


def _installation(item: dict) -> Installation:
    return record(Installation, item, files=[InstalledFile(**file) for file in item.get("files", [])])


class Installations:
    def __init__(self, table: Table, cache_seconds: float = 0.0):
        self.table = table
        self._routing: TtlCache[Installation] = TtlCache(cache_seconds)

    def create(self, installation: Installation) -> Write:
        pk, sk = keys.installation(installation.workspace_id, installation.installation_id)
        item = {"pk": pk, "sk": sk, **attributes(installation, skip=("files",)),
                "files": [asdict(file) for file in installation.files]}
        return Write.put(item, must_not_exist=True)

    def get(self, workspace_id: str, installation_id: str) -> Installation | None:
        item = self.table.get(*keys.installation(workspace_id, installation_id))
        return _installation(item) if item else None

    def for_routing(self, workspace_id: str, installation_id: str) -> Installation | None:
        """An installation for a tool call: possibly a few seconds old."""
        found = self._routing.get((workspace_id, installation_id))
        if found is None:
            found = self.get(workspace_id, installation_id)
            if found is not None:
                self._routing.put((workspace_id, installation_id), found)
        return found

    def forget(self, workspace_id: str, installation_id: str) -> None:
        self._routing.forget((workspace_id, installation_id))

    def page(self, workspace_id: str, *, limit: int, cursor: str | None, user_id: str | None = None
             ) -> Page[Installation]:
        """Newest first; with `user_id`, only that user's."""
        where = Condition(equals={"user_id": user_id}) if user_id else None
        page = self.table.query(keys.workspace_pk(workspace_id), prefix=keys.INSTALLATION, newest_first=True,
                                limit=limit, cursor=cursor, where=where)
        return page.map(_installation)

    def change(self, installation: Installation, **changes: Any) -> Installation:
        """Set fields (None removes one), if the installation is still at the version read;
        ConditionFailed otherwise. The installation as it now is."""
        values = {name: value for name, value in changes.items() if value is not None}
        if "files" in values:
            values["files"] = [asdict(file) for file in values["files"]]
        removed = [name for name, value in changes.items() if value is None]
        item = self.table.update(*keys.installation(installation.workspace_id, installation.installation_id),
                                 set=values, remove=removed, expect_version=installation.version)
        self.forget(installation.workspace_id, installation.installation_id)
        return _installation(item)

    def delete(self, installation: Installation) -> bool:
        self.forget(installation.workspace_id, installation.installation_id)
        return self.table.delete(*keys.installation(installation.workspace_id, installation.installation_id))
