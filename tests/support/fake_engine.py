"""A small OpenAI-compatible stand-in for `vllm serve`, for hosts without a GPU.

Tests start it through the worker, exactly as the worker starts vLLM:

    BERTH_WORKER_VLLM_COMMAND="python /path/to/fake_engine.py [--fake-...]"
    # the worker appends: SNAPSHOT --host 127.0.0.1 --port P --served-model-name NAME --tensor-parallel-size N ...

It takes vLLM's arguments (an unknown one is an error, as in vLLM), refuses a directory that is not
a model (no config.json, no weights) the way vLLM fails to load, answers `GET /health`,
`GET /v1/models`, `POST /v1/chat/completions` and `/v1/completions` (both with `stream: true`) and
`/v1/embeddings`, with deterministic answers: a completion echoes its prompt, an embedding is
derived from a hash of its text. `GET /fake/launch` tells a test how it was started, and
`GET /fake/last-request` the headers of the last POST it answered.

Fault modes (flags placed in the command, before the worker's arguments):
  --fake-never-healthy          listen, but answer /health with 503 forever
  --fake-fail-to-load           print a loading error and exit 1 before listening
  --fake-startup-delay S        take S seconds to "load" before listening
  --fake-crash-after-ready S    exit with code 3, S seconds after its first healthy answer to /health
  --fake-crash-once-file PATH   with --fake-crash-after-ready: crash only if PATH does not exist (then create it)

Stdlib plus starlette and uvicorn (what vLLM's own server is built on); it imports nothing from berth.
"""

import argparse
import asyncio
import hashlib
import json
import math
import os
import sys
import threading
import time
import uuid
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route


def _arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="vllm serve")
    parser.add_argument("serve", nargs="?", choices=["serve"], help=argparse.SUPPRESS)
    parser.add_argument("model")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--served-model-name", nargs="+")
    parser.add_argument("--tensor-parallel-size", type=int, default=1)
    parser.add_argument("--max-model-len", type=int)
    parser.add_argument("--gpu-memory-utilization", type=float, default=0.9)
    parser.add_argument("--dtype", default="auto", choices=["auto", "half", "float16", "bfloat16", "float", "float32"])
    parser.add_argument("--fake-never-healthy", action="store_true")
    parser.add_argument("--fake-fail-to-load", action="store_true")
    parser.add_argument("--fake-startup-delay", type=float, default=0.0)
    parser.add_argument("--fake-crash-after-ready", type=float)
    parser.add_argument("--fake-crash-once-file")
    arguments = parser.parse_args(argv)
    if arguments.serve is None and arguments.model == "serve":
        parser.error("the following arguments are required: model")
    return arguments


def _log(level: str, message: str) -> None:
    print(f"{level} {time.strftime('%m-%d %H:%M:%S')} [fake_engine] {message}", flush=True)


def _load(model: str) -> dict:
    """The model's config, or exit as vLLM does when a directory is not a loadable model."""
    directory = Path(model)
    try:
        config = json.loads((directory / "config.json").read_text())
    except (OSError, ValueError) as error:
        _log("ERROR", f"Failed to load the model config of {model}: {error}")
        sys.exit(1)
    if not any(path.suffix in (".safetensors", ".bin") for path in directory.iterdir()):
        _log("ERROR", f"Cannot find any model weights with `{model}`")
        sys.exit(1)
    return config


class Engine:
    def __init__(self, arguments: argparse.Namespace, config: dict):
        self.arguments = arguments
        self.name = (arguments.served_model_name or [arguments.model])[0]
        self.max_model_len = arguments.max_model_len or config.get("max_position_embeddings") or 2048
        self.dimensions = int(config.get("hidden_size") or 16)
        self.healthy = not arguments.fake_never_healthy
        self.last_request_headers: dict[str, str] = {}
        self._crash_armed = arguments.fake_crash_after_ready is not None

    def unknown_model(self, body: dict) -> Response | None:
        if body.get("model") in (self.name, None):
            return None
        message = f"The model `{body.get('model')}` does not exist."
        return JSONResponse({"error": {"message": message, "type": "NotFoundError", "param": None, "code": 404},
                             "object": "error", "message": message, "type": "NotFoundError", "code": 404},
                            status_code=404)

    # --- routes -------------------------------------------------------------------------

    async def health(self, request: Request) -> Response:
        if self.healthy and self._crash_armed:  # whoever asked now knows it was ready
            self._crash_armed = False
            _crash_later(self.arguments.fake_crash_after_ready, self.arguments.fake_crash_once_file)
        return Response(status_code=200 if self.healthy else 503)

    async def models(self, request: Request) -> Response:
        return JSONResponse({"object": "list", "data": [{
            "id": self.name, "object": "model", "created": int(time.time()), "owned_by": "vllm",
            "root": self.arguments.model, "parent": None, "max_model_len": self.max_model_len}]})

    async def launch(self, request: Request) -> Response:
        return JSONResponse({"argv": sys.argv[1:], "pid": os.getpid(), "environment": dict(os.environ)})

    async def last_request(self, request: Request) -> Response:
        return JSONResponse({"headers": self.last_request_headers})

    async def chat(self, request: Request) -> Response:
        self.last_request_headers = dict(request.headers)
        body = await request.json()
        if (refusal := self.unknown_model(body)) is not None:
            return refusal
        last = next((m.get("content") for m in reversed(body.get("messages") or []) if m.get("role") == "user"), "")
        text = f"echo: {last if isinstance(last, str) else json.dumps(last)}"
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages") or [])
        if body.get("stream"):
            return self._stream("chat.completion.chunk", text, prompt_tokens, body, chat=True)
        return JSONResponse(self._completion("chat.completion", text, prompt_tokens, chat=True))

    async def completions(self, request: Request) -> Response:
        self.last_request_headers = dict(request.headers)
        body = await request.json()
        if (refusal := self.unknown_model(body)) is not None:
            return refusal
        prompt = body.get("prompt") or ""
        text = f"echo: {prompt if isinstance(prompt, str) else ' '.join(map(str, prompt))}"
        if body.get("stream"):
            return self._stream("text_completion", text, len(str(prompt).split()), body, chat=False)
        return JSONResponse(self._completion("text_completion", text, len(str(prompt).split()), chat=False))

    async def embeddings(self, request: Request) -> Response:
        body = await request.json()
        if (refusal := self.unknown_model(body)) is not None:
            return refusal
        inputs = body.get("input")
        texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
        data = [{"object": "embedding", "index": index, "embedding": self._vector(str(text))}
                for index, text in enumerate(texts)]
        tokens = sum(len(str(text).split()) for text in texts)
        return JSONResponse({"object": "list", "model": self.name, "data": data,
                             "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

    # --- answers ------------------------------------------------------------------------

    def _completion(self, kind: str, text: str, prompt_tokens: int, *, chat: bool) -> dict:
        choice = {"index": 0, "finish_reason": "stop", "logprobs": None}
        choice.update({"message": {"role": "assistant", "content": text}} if chat else {"text": text})
        completion_tokens = len(text.split())
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": kind, "created": int(time.time()), "model": self.name,
                "choices": [choice], "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                                               "total_tokens": prompt_tokens + completion_tokens}}

    def _stream(self, kind: str, text: str, prompt_tokens: int, body: dict, *, chat: bool) -> Response:
        completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        words = text.split(" ")
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

        def chunk(choices: list, usage: dict | None = None) -> str:
            payload = {"id": completion_id, "object": kind, "created": created, "model": self.name,
                       "choices": choices}
            if usage is not None:
                payload["usage"] = usage
            return f"data: {json.dumps(payload)}\n\n"

        async def events():
            for index, word in enumerate(words):
                piece = word if index == 0 else f" {word}"
                delta = {"delta": {"role": "assistant", "content": piece} if index == 0 else {"content": piece}} \
                    if chat else {"text": piece}
                yield chunk([{"index": 0, "finish_reason": None, "logprobs": None, **delta}])
                await asyncio.sleep(0.01)  # token by token, so a client sees the stream arrive in pieces
            yield chunk([{"index": 0, "finish_reason": "stop", "logprobs": None,
                          **({"delta": {}} if chat else {"text": ""})}])
            if include_usage:
                yield chunk([], {"prompt_tokens": prompt_tokens, "completion_tokens": len(words),
                                 "total_tokens": prompt_tokens + len(words)})
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    def _vector(self, text: str) -> list[float]:
        seed = hashlib.sha256(text.encode()).digest()
        raw = [((seed[index % len(seed)] + index * 31) % 251) / 125.0 - 1.0 for index in range(self.dimensions)]
        norm = math.sqrt(sum(value * value for value in raw)) or 1.0
        return [value / norm for value in raw]


def _crash_later(seconds: float, once_file: str | None) -> None:
    if once_file is not None:
        if Path(once_file).exists():
            return
        Path(once_file).touch()

    def crash() -> None:
        time.sleep(seconds)
        _log("ERROR", "EngineCore encountered a fatal error (injected by --fake-crash-after-ready)")
        os._exit(3)

    threading.Thread(target=crash, daemon=True).start()


def main(argv: list[str] | None = None) -> None:
    arguments = _arguments(sys.argv[1:] if argv is None else argv)
    _log("INFO", f"vLLM API server version 0.0.0-fake; args: {arguments}")
    _log("INFO", f"Loading weights from {arguments.model}")
    if arguments.fake_fail_to_load:
        _log("ERROR", "ValueError: the model's architecture is not supported (injected by --fake-fail-to-load)")
        sys.exit(1)
    config = _load(arguments.model)
    time.sleep(arguments.fake_startup_delay)
    engine = Engine(arguments, config)
    app = Starlette(routes=[
        Route("/health", engine.health),
        Route("/v1/models", engine.models),
        Route("/v1/chat/completions", engine.chat, methods=["POST"]),
        Route("/v1/completions", engine.completions, methods=["POST"]),
        Route("/v1/embeddings", engine.embeddings, methods=["POST"]),
        Route("/fake/launch", engine.launch),
        Route("/fake/last-request", engine.last_request),
    ])
    _log("INFO", f"Starting vLLM API server on http://{arguments.host}:{arguments.port}")
    uvicorn.run(app, host=arguments.host, port=arguments.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
