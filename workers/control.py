"""Control requests to this worker: cancel a job, or act on a live sandbox (list and call tools,
stop, start, inspect, proxy HTTP, ...).

They arrive two ways, and both end in `ControlHandling.answer`: from the control queue
(`handle_queued`, which posts the reply to the API), or straight from the API on the worker's
control endpoint (`workers.control_server`, which returns the reply in its response). Secrets a
message brings (sealed for this runtime) replace its running job's before the action runs.
"""

import asyncio
import logging
import time

from app.contract.logs import log
from app.contract.messages import ControlMessage, ControlReply
from workers.api_client import ApiError, ApiUnavailable, RuntimeApiClient, Unauthorized
from workers.executors.base import ExecutorError
from workers.executors.registry import ControlHandler, ExecutorRegistry
from workers.job_run import JobRunner
from workers.mailbox import Mailbox, parse
from workers.transport import ReceivedMessage

logger = logging.getLogger("berth.worker")


class ControlHandling:
    def __init__(self, executors: ExecutorRegistry, jobs: JobRunner, api: RuntimeApiClient, mailbox: Mailbox):
        self._executors = executors
        self._jobs = jobs
        self._api = api
        self._mailbox = mailbox

    async def answer(self, message: ControlMessage) -> ControlReply:
        """The reply to a control message, whichever way it came; never raises."""
        handler: ControlHandler | None = (
            self._jobs.cancel if message.action == "cancel" else self._executors.control_handler(message.action)
        )
        if handler is None:
            return ControlReply(ok=False, error=f"unsupported action {message.action!r} on this runtime")
        try:
            self._jobs.replace_secrets(message)
            return ControlReply(ok=True, result=await handler(message))
        except ExecutorError as exc:
            return ControlReply(ok=False, error=str(exc), code=exc.code)
        except Exception as exc:
            log(logger, logging.ERROR, "control action failed", action=message.action, exc_info=True)
            return ControlReply(ok=False, error=f"{message.action} failed unexpectedly ({type(exc).__name__})")

    async def handle_queued(self, received: ReceivedMessage) -> None:
        """A message from the control queue: answered within its deadline, the reply posted to the
        API, the message deleted (or left for redelivery when the reply could not be posted)."""
        try:
            message = parse(received, ControlMessage)
        except ValueError as exc:
            await self._mailbox.set_aside_unreadable(received, exc)
            return
        time_left = message.deadline - time.time()
        if time_left <= 0:
            log(logger, logging.INFO, "control message past its deadline; dropped", action=message.action,
                job_id=message.job_id)
            await self._mailbox.delete(received)
            return
        try:
            reply = await asyncio.wait_for(self.answer(message), timeout=time_left)
        except TimeoutError:
            log(logger, logging.WARNING, "control action outlived its deadline; nobody awaits the answer",
                action=message.action, job_id=message.job_id)
            await self._mailbox.delete(received)
            return
        try:
            await self._api.reply_control(message.workspace_id, message.request_id, reply)
        except (ApiUnavailable, Unauthorized) as exc:
            # Left for redelivery: answered again if still within its deadline.
            log(logger, logging.WARNING, "control reply failed", action=message.action, error=str(exc))
            return
        except ApiError as exc:
            log(logger, logging.WARNING, "API refused the control reply", action=message.action, error=str(exc))
        await self._mailbox.delete(received)
