"""Control replies: a worker's answer to a control request that came through the queue, kept
briefly (a TTL) for the waiting API request to read once."""

from app.contract.messages import ControlReply
from app.errors import ConditionFailed
from app.store import keys
from app.store.table import TTL_ATTRIBUTE, Table


class Replies:
    def __init__(self, table: Table):
        self.table = table

    def add(self, workspace_id: str, request_id: str, reply: ControlReply, runtime_id: str,
            expires_epoch: int) -> bool:
        """Store a reply; False when one is there already (a retried post: the first one stands)."""
        pk, sk = keys.reply(workspace_id, request_id)
        item = {"pk": pk, "sk": sk, "request_id": request_id, TTL_ATTRIBUTE: expires_epoch, "ok": reply.ok,
                "result": reply.result, "error": reply.error, "code": reply.code, "runtime_id": runtime_id}
        try:
            self.table.put(item, must_not_exist=True)
            return True
        except ConditionFailed:
            return False

    def take(self, workspace_id: str, request_id: str) -> ControlReply | None:
        """The reply, if it came; read once and deleted, which keeps the table small."""
        item = self.table.get(*keys.reply(workspace_id, request_id))
        if item is None:
            return None
        self.table.delete(*keys.reply(workspace_id, request_id))
        return ControlReply(ok=item["ok"], result=item.get("result", {}), error=item.get("error", ""),
                            code=item.get("code", ""))
