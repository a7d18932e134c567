"""The table layer against in-process moto: conditions, versions, TTL, cursors, transactions."""

import time

import pytest

from app.errors import BadRequest, ConditionFailed
from app.store.table import Condition, Write


@pytest.fixture
def table(store):
    return store.table


def test_put_only_if_new(table):
    table.put({"pk": "WS#a", "sk": "X#1", "n": 1}, must_not_exist=True)
    with pytest.raises(ConditionFailed):
        table.put({"pk": "WS#a", "sk": "X#1", "n": 2}, must_not_exist=True)
    assert table.get("WS#a", "X#1")["n"] == 1


def test_every_update_bumps_the_version_and_expected_versions_fence_races(table):
    table.put({"pk": "WS#a", "sk": "X#1", "n": 1})
    first = table.update("WS#a", "X#1", set={"n": 2}, expect_version=1)
    assert first["version"] == 2
    with pytest.raises(ConditionFailed):
        table.update("WS#a", "X#1", set={"n": 3}, expect_version=1)  # a writer that read version 1 loses
    assert table.get("WS#a", "X#1")["n"] == 2


def test_update_of_a_missing_item_fails_instead_of_creating_it(table):
    with pytest.raises(ConditionFailed):
        table.update("WS#a", "X#missing", set={"n": 1})
    assert table.get("WS#a", "X#missing") is None


def test_conditions(table):
    table.put({"pk": "WS#a", "sk": "J#1", "status": "queued", "slots": 0})
    table.update("WS#a", "J#1", add={"slots": 1}, condition=Condition(below={"slots": 1}))
    with pytest.raises(ConditionFailed):
        table.update("WS#a", "J#1", add={"slots": 1}, condition=Condition(below={"slots": 1}))
    with pytest.raises(ConditionFailed):
        table.update("WS#a", "J#1", set={"status": "running"}, condition=Condition(in_={"status": ["running"]}))
    table.update("WS#a", "J#1", set={"status": "running"}, condition=Condition(in_={"status": ["queued"]}))
    assert table.get("WS#a", "J#1")["status"] == "running"


def test_expired_items_are_invisible_before_any_ttl_deletion(table):
    past, future = int(time.time()) - 5, int(time.time()) + 3600
    table.put({"pk": "WS#a", "sk": "S#old", "expires_epoch": past})
    table.put({"pk": "WS#a", "sk": "S#new", "expires_epoch": future})
    assert table.get("WS#a", "S#old") is None
    assert [i["sk"] for i in table.query("WS#a", prefix="S#").items] == ["S#new"]
    assert any(i["sk"] == "S#old" for i in table.scan_all())  # still stored: only hidden


def test_values_round_trip(table):
    item = {"pk": "WS#a", "sk": "V#1", "i": 7, "f": 1.5, "b": True, "none": None, "m": {"x": [1, "two"]}}
    table.put(item)
    stored = table.get("WS#a", "V#1")
    assert {k: stored[k] for k in item} == item


def test_pagination_cursors_are_opaque_and_bound_to_their_partition(table):
    for n in range(7):
        table.put({"pk": "WS#a", "sk": f"K#{n}"})
        table.put({"pk": "WS#b", "sk": f"K#{n}"})
    seen, cursor = [], None
    while True:
        page = table.query("WS#a", prefix="K#", limit=3, cursor=cursor)
        seen += [i["sk"] for i in page.items]
        if page.cursor is None:
            break
        cursor = page.cursor
        assert "WS#a" not in cursor  # opaque to clients
    assert seen == [f"K#{n}" for n in range(7)]
    other_cursor = table.query("WS#b", prefix="K#", limit=3).cursor
    with pytest.raises(BadRequest):
        table.query("WS#a", prefix="K#", limit=3, cursor=other_cursor)  # another tenant's cursor


def test_filtered_pages_still_fill_up(table):
    for n in range(10):
        table.put({"pk": "WS#a", "sk": f"J#{n:02d}", "status": "error" if n % 2 else "complete"})
    page = table.query("WS#a", prefix="J#", limit=3, where=Condition(equals={"status": "error"}))
    assert [i["sk"] for i in page.items] == ["J#01", "J#03", "J#05"]
    rest = table.query("WS#a", prefix="J#", limit=3, where=Condition(equals={"status": "error"}), cursor=page.cursor)
    assert [i["sk"] for i in rest.items] == ["J#07", "J#09"]


def test_transactions_are_all_or_nothing(table):
    table.put({"pk": "WS#a", "sk": "T#1", "n": 1})
    with pytest.raises(ConditionFailed):
        table.transact([Write.put({"pk": "WS#a", "sk": "T#2"}), Write.put({"pk": "WS#a", "sk": "T#1"},
                                                                           must_not_exist=True)])
    assert table.get("WS#a", "T#2") is None


def test_counters_increment_atomically_and_create_when_missing(table):
    for _ in range(3):
        table.increment("WS#a", "U#1", add={"amount": 2}, set={"kind": "jobs"})
    assert table.get("WS#a", "U#1")["amount"] == 6


def test_delete_expired_removes_only_what_has_expired(table):
    now = int(time.time())
    table.put({"pk": "WS#a", "sk": "R#old", "expires_epoch": now - 10})
    table.put({"pk": "WS#a", "sk": "R#new", "expires_epoch": now + 3600})
    table.put({"pk": "WS#a", "sk": "R#forever"})
    assert table.delete_expired(now) == 1
    assert {i["sk"] for i in table.scan_all()} == {"R#new", "R#forever"}
