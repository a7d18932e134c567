"""Tool arguments checked against the tool's input schema in a child process, bounded in time.

A tool's input schema comes from the server (untrusted code in the sandbox) and its arguments
from the user. Validating them can take unbounded time: a regex `pattern` with catastrophic
backtracking, or `uniqueItems` over a large array. Python's `re` holds the interpreter lock
while it matches, so neither the event loop nor a thread would get a turn: the worker's
heartbeats, its other sandboxes and its control endpoint would all freeze. So validation runs
in a child process (this file, run as a script: it needs only `jsonschema`), and the worker waits
at most CHECK_TIMEOUT_SECONDS; a check that runs over is refused and its process killed.

The protocol is one JSON line each way. A request names its schema by a digest and carries the
schema itself only the first time that process sees it; the child keeps one validator per
schema. Checkers are pooled: a call takes an idle one or starts another, and gives it back.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import sys
from typing import Any

CHECK_TIMEOUT_SECONDS = 2.0
IDLE_CHECKERS_KEPT = 2
_LINE_LIMIT = 64 * 1024 * 1024  # a request carries at most one call's arguments (the API caps bodies at 1 MiB)


class CheckTimedOut(Exception):
    """Validation ran past its time bound; the checker that ran it is gone."""


class _Checker:
    """One child process and the schemas it has been sent."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.known: set[str] = set()

    async def check(self, key: str, schema: dict, arguments: dict) -> str | None:
        assert self.process.stdin is not None and self.process.stdout is not None
        request: dict[str, Any] = {"key": key, "arguments": arguments}
        if key not in self.known:
            request["schema"] = schema
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        await self.process.stdin.drain()
        line = await self.process.stdout.readline()
        if not line:
            raise ConnectionError("the argument checker exited")
        self.known.add(key)
        return json.loads(line)["problem"]

    def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()


class ArgumentChecks:
    """A pool of checker processes shared by the sandboxes of one worker."""

    def __init__(self, timeout: float = CHECK_TIMEOUT_SECONDS) -> None:
        self.timeout = timeout
        self._idle: list[_Checker] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def problem(self, schema: dict, arguments: dict) -> str | None:
        """What is wrong with `arguments` under `schema` ("path: message"), or None when they
        are valid or the schema itself is broken (the server judges those calls). Raises
        CheckTimedOut past the time bound."""
        key = hashlib.sha256(json.dumps(schema, sort_keys=True).encode()).hexdigest()
        if self._loop is not asyncio.get_running_loop():
            # Processes started on another event loop cannot be awaited on this one.
            for stale in self._idle:
                stale.kill()
            self._idle, self._loop = [], asyncio.get_running_loop()
        checker = self._idle.pop() if self._idle else await self._start()
        try:
            problem = await asyncio.wait_for(checker.check(key, schema, arguments), self.timeout)
        except BaseException as error:  # timed out, cancelled, or the child died: it cannot be reused
            checker.kill()
            await checker.process.wait()
            if isinstance(error, TimeoutError):
                raise CheckTimedOut(f"checking the arguments took over {self.timeout:g}s") from None
            raise
        if len(self._idle) < IDLE_CHECKERS_KEPT:
            self._idle.append(checker)
        else:
            checker.kill()
            await checker.process.wait()
        return problem

    async def close(self) -> None:
        same_loop = self._loop is asyncio.get_running_loop()
        for checker in self._idle:
            checker.kill()
            if same_loop:  # a process started on another loop can be killed, not awaited, here
                await checker.process.wait()
        self._idle.clear()

    async def _start(self) -> _Checker:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-I", __file__, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            limit=_LINE_LIMIT,
        )
        return _Checker(process)


def _serve() -> None:
    """The child: answer requests until stdin closes."""
    import jsonschema  # only the child pays for it

    validators: dict[str, Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        key = request["key"]
        if key not in validators:
            validators[key] = _validator(jsonschema, request["schema"])
        validator = validators[key]
        answer = None
        try:
            problem = validator and jsonschema.exceptions.best_match(validator.iter_errors(request["arguments"]))
        except Exception:  # a schema jsonschema cannot apply (an unresolvable $ref, say): the server judges
            problem = None
        if problem:
            where = "/".join(str(part) for part in problem.absolute_path) or "arguments"
            answer = f"{where}: {problem.message}"
        sys.stdout.write(json.dumps({"problem": answer}) + "\n")
        sys.stdout.flush()


def _validator(jsonschema: Any, schema: Any) -> Any:
    """A validator for a tool's input schema; None for a broken schema."""
    try:
        validator_class = jsonschema.validators.validator_for(schema)
        validator_class.check_schema(schema)
    except (jsonschema.exceptions.SchemaError, TypeError, AttributeError):
        return None
    return validator_class(schema)


if __name__ == "__main__":
    _serve()
