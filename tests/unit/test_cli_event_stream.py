"""Following a job: the client's event stream across window cuts and network failures (against
a scripted SSE server on httpx's in-memory transport), and how events are drawn."""

import io
import json

import httpx
import pytest
from rich.console import Console

from berth_cli.client import BerthClient
from berth_cli.client import http as client_http
from berth_cli.errors import ApiError, Unreachable
from berth_cli.event_view import EventView


def frame(seq: int, step: str, status: str, message: str = "", data: dict | None = None) -> str:
    body = {"seq": seq, "step": step, "status": status, "message": message, "data": data or {},
            "at": f"2026-01-01T12:00:{seq:02d}Z"}
    return f"id: {seq}\nevent: {status}\ndata: {json.dumps(body)}\n\n"


class ScriptedServer:
    """Answers each event-stream request with the next scripted answer, recording Last-Event-ID."""

    def __init__(self, answers):
        self.answers = list(answers)
        self.last_event_ids: list[str | None] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.last_event_ids.append(request.headers.get("last-event-id"))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, httpx.Response):
            return answer
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=answer.encode())


def follow(server: ScriptedServer, after: int = 0) -> list[int]:
    with BerthClient("http://berth.test", "bak_test", transport=httpx.MockTransport(server)) as client:
        return [event["seq"] for event in client.jobs.events("job_1", after=after)]


def test_a_stream_cut_at_its_window_resumes_after_the_last_event_without_a_repeat_or_a_gap():
    server = ScriptedServer([
        "retry: 10\n\n" + frame(1, "job", "queued") + frame(2, "job", "start"),  # cut: no `end`
        frame(2, "job", "start") + frame(3, "resolve", "ok"),  # a resumed stream that repeats one
        "retry: 10\n\n",  # a window with nothing new
        frame(4, "job", "complete") + "event: end\ndata: {}\n\n",
    ])
    assert follow(server) == [1, 2, 3, 4]
    assert server.last_event_ids == [None, "2", "3", "3"]


def test_a_network_failure_mid_follow_is_retried_from_the_last_event(monkeypatch):
    waits: list[float] = []
    monkeypatch.setattr(client_http.time, "sleep", waits.append)
    server = ScriptedServer([
        "retry: 250\n\n" + frame(1, "job", "queued"),
        httpx.ConnectError("connection refused"),
        httpx.ReadTimeout("timed out"),
        frame(2, "job", "complete") + "event: end\ndata: {}\n\n",
    ])
    assert follow(server) == [1, 2]
    assert server.last_event_ids == [None, "1", "1", "1"]
    assert waits == [0.25, 0.5]  # the server's retry delay, times the attempt


def test_an_api_that_stays_unreachable_ends_the_follow_naming_it(monkeypatch):
    monkeypatch.setattr(client_http.time, "sleep", lambda _seconds: None)
    server = ScriptedServer([httpx.ConnectError("connection refused")] * (client_http.STREAM_RETRIES + 1))
    with pytest.raises(Unreachable) as unreachable:
        follow(server)
    assert "http://berth.test" in unreachable.value.message and "connection refused" in unreachable.value.message


def test_an_error_answer_to_the_stream_is_berths_error_message():
    body = {"success": False, "error": "no job job_1", "status": 404, "request_id": "req_abc"}
    server = ScriptedServer([httpx.Response(404, json=body)])
    with pytest.raises(ApiError) as refused:
        follow(server, after=7)
    assert (refused.value.status, refused.value.message, refused.value.request_id) == (404, "no job job_1", "req_abc")
    assert server.last_event_ids == ["7"]


def pull_events() -> list[dict]:
    total = 100_000_000
    return [
        json.loads(frame(1, "job", "start").split("data: ")[1]),
        *(json.loads(frame(seq, "download", "running", "model.safetensors",
                           {"file": "model.safetensors", "bytes_done": done, "bytes_total": total}).split("data: ")[1])
          for seq, done in ((2, 0), (3, 50_000_000), (4, 75_000_000))),
        json.loads(frame(5, "download", "ok", "model.safetensors",
                         {"file": "model.safetensors", "bytes_done": total, "bytes_total": total}).split("data: ")[1]),
        json.loads(frame(6, "job", "complete").split("data: ")[1]),
    ]


def test_on_a_terminal_byte_counts_draw_a_progress_bar_and_only_status_changes_print_lines():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=120, color_system=None)
    with EventView(console, "job_1", "queued") as view:
        for event in pull_events()[:4]:
            view.show(event)
        assert view.live is not None
        view.live.refresh()
        drawn = screen.getvalue()
        assert "download model.safetensors" in drawn and "75.0/100.0 MB" in drawn  # the bar, live
        assert "job_1" in drawn and "running" in drawn  # the status line
        for event in pull_events()[4:]:
            view.show(event)
    lines = [line for line in screen.getvalue().splitlines() if "  download " in line and "MB)" in line]
    assert len(lines) == 2, lines  # `running` once (then the bar moves), and `ok`
    assert "ok" in lines[1] and "(100.0 MB / 100.0 MB)" in lines[1]


def test_into_a_file_every_event_is_one_line_with_its_byte_counts():
    screen = io.StringIO()
    with EventView(Console(file=screen, width=120), "job_1", "queued") as view:
        for event in pull_events():
            view.show(event)
    lines = screen.getvalue().splitlines()
    assert len(lines) == 6 and view.live is None
    assert lines[2] == "12:00:03    3  download   running   model.safetensors (50.0 MB / 100.0 MB)"
    assert lines[5] == "12:00:06    6  job        complete"
