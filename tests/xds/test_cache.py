"""SnapshotCache (store and notify) and StatusBook (what each proxy holds)."""

from __future__ import annotations

from typing import Any

from gossamer.translate import CLUSTER, ENDPOINT, LISTENER, PUSH_ORDER, ROUTE, Resource, Snapshot
from gossamer.xds import Event, Report, SnapshotCache, StatusBook

NODE = "web-0"


def make_snapshot(
    port: int = 20001, timeout: str = "1s", *, with_listener: bool = True
) -> Snapshot:
    by_type: dict[str, list[Resource]] = {
        CLUSTER: [Resource("svc", {"name": "svc", "type": "EDS", "connect_timeout": timeout})],
        ENDPOINT: [Resource("svc", {"cluster_name": "svc", "port": port})],
    }
    if with_listener:
        by_type[LISTENER] = [Resource("out", {"name": "out", "rds": {"route_config_name": "r"}})]
        by_type[ROUTE] = [Resource("r", {"name": "r", "routes": [{"route": {"cluster": "svc"}}]})]
    return Snapshot.build(by_type)


class Recorder:
    def __init__(self) -> None:
        self.seen: list[Any] = []

    def __call__(self, value: Any) -> None:
        self.seen.append(value)


# --- SnapshotCache -------------------------------------------------------------------------


def test_set_stores_and_notifies_watchers() -> None:
    cache = SnapshotCache()
    watcher = Recorder()
    cache.watch(NODE, watcher)
    snapshot = make_snapshot()

    assert cache.set(NODE, snapshot) is True
    assert cache.get(NODE) is snapshot
    assert watcher.seen == [snapshot]


def test_set_with_an_unchanged_version_returns_false_and_notifies_nobody() -> None:
    cache = SnapshotCache()
    first = make_snapshot()
    cache.set(NODE, first)
    watcher = Recorder()
    cache.watch(NODE, watcher)

    equal = make_snapshot()  # a new object with the same content
    assert equal is not first
    assert cache.set(NODE, equal) is False
    assert watcher.seen == []
    assert cache.get(NODE) is first


def test_set_with_a_changed_version_notifies_with_the_new_snapshot() -> None:
    cache = SnapshotCache()
    cache.set(NODE, make_snapshot())
    watcher = Recorder()
    cache.watch(NODE, watcher)

    changed = make_snapshot(port=30001)
    assert cache.set(NODE, changed) is True
    assert watcher.seen == [changed]
    assert cache.get(NODE) is changed


def test_watchers_are_per_node() -> None:
    cache = SnapshotCache()
    web, other = Recorder(), Recorder()
    cache.watch(NODE, web)
    cache.watch("db-0", other)

    cache.set(NODE, make_snapshot())

    assert len(web.seen) == 1
    assert other.seen == []
    assert cache.get("db-0") is None
    assert cache.nodes() == [NODE]


def test_cancel_stops_notifications_for_that_watcher_only() -> None:
    cache = SnapshotCache()
    stopped, kept = Recorder(), Recorder()
    cancel = cache.watch(NODE, stopped)
    cache.watch(NODE, kept)

    cancel()
    cache.set(NODE, make_snapshot())

    assert stopped.seen == []
    assert len(kept.seen) == 1
    cancel()  # cancelling twice is harmless
    cache.set(NODE, make_snapshot(port=2))
    assert stopped.seen == []
    assert len(kept.seen) == 2


def test_a_watcher_may_cancel_itself_while_being_notified() -> None:
    cache = SnapshotCache()
    calls: list[Snapshot] = []
    cancel = None

    def once(snapshot: Snapshot) -> None:
        calls.append(snapshot)
        assert cancel is not None
        cancel()

    cancel = cache.watch(NODE, once)
    cache.set(NODE, make_snapshot())
    cache.set(NODE, make_snapshot(port=2))
    assert len(calls) == 1


def test_clear_forgets_the_snapshot_so_the_same_one_counts_as_new() -> None:
    cache = SnapshotCache()
    snapshot = make_snapshot()
    cache.set(NODE, snapshot)
    cache.clear(NODE)
    assert cache.get(NODE) is None
    assert cache.nodes() == []
    assert cache.set(NODE, snapshot) is True


def test_nodes_are_sorted() -> None:
    cache = SnapshotCache()
    for node in ("web-1", "api-0", "web-0"):
        cache.set(node, make_snapshot())
    assert cache.nodes() == ["api-0", "web-0", "web-1"]


# --- StatusBook ----------------------------------------------------------------------------


def book_with(snapshot: Snapshot) -> tuple[SnapshotCache, StatusBook]:
    cache = SnapshotCache()
    cache.set(NODE, snapshot)
    return cache, StatusBook(cache, clock=lambda: 1234.5)


def reports(event: Event, snapshot: Snapshot, types: tuple[str, ...] = PUSH_ORDER) -> list[Report]:
    return [Report(event, t, snapshot.versions[t], tuple(snapshot.of(t))) for t in types]


def types_of(book: StatusBook) -> dict[str, dict[str, Any]]:
    return book.summary(NODE)["types"]  # type: ignore[return-value]


def test_synced_only_after_every_type_acked_at_its_current_version() -> None:
    snapshot = make_snapshot()
    _, book = book_with(snapshot)
    assert not book.synced(NODE)  # never connected

    book.connected(NODE, "sotw")
    assert not book.synced(NODE)
    book.record(NODE, reports(Event.SENT, snapshot))
    assert not book.synced(NODE)

    book.record(NODE, reports(Event.ACK, snapshot, (CLUSTER, ENDPOINT, LISTENER)))
    assert not book.synced(NODE)
    assert types_of(book)["routes"]["state"] == "STALE"
    assert types_of(book)["clusters"]["state"] == "SYNCED"

    book.record(NODE, reports(Event.ACK, snapshot, (ROUTE,)))
    assert book.synced(NODE)
    assert book.summary(NODE)["synced"] is True


def test_a_new_snapshot_unsyncs_until_its_changed_type_is_acked() -> None:
    old = make_snapshot()
    cache, book = book_with(old)
    book.connected(NODE, "delta")
    book.record(NODE, reports(Event.ACK, old))
    assert book.synced(NODE)

    new = make_snapshot(timeout="2s")
    cache.set(NODE, new)
    assert not book.synced(NODE)
    assert types_of(book)["clusters"]["state"] == "STALE"
    assert types_of(book)["endpoints"]["state"] == "SYNCED"

    # An ACK of the old version does not count.
    book.record(NODE, [Report(Event.ACK, CLUSTER, old.versions[CLUSTER])])
    assert not book.synced(NODE)
    book.record(NODE, [Report(Event.ACK, CLUSTER, new.versions[CLUSTER])])
    assert book.synced(NODE)


def test_types_without_resources_need_no_ack() -> None:
    snapshot = make_snapshot(with_listener=False)
    _, book = book_with(snapshot)
    book.connected(NODE, "sotw")
    book.record(NODE, reports(Event.ACK, snapshot, (CLUSTER, ENDPOINT)))
    assert book.synced(NODE)


def test_synced_is_false_without_a_snapshot() -> None:
    book = StatusBook(SnapshotCache())
    book.connected(NODE, "sotw")
    book.record(NODE, [Report(Event.ACK, CLUSTER, "v1")])
    assert not book.synced(NODE)
    assert book.summary(NODE)["synced"] is False


def test_nack_shows_in_summary_with_error_and_rejected_resources() -> None:
    good = make_snapshot()
    cache, book = book_with(good)
    book.connected(NODE, "sotw")
    book.record(NODE, reports(Event.ACK, good))

    bad = make_snapshot(timeout="-1s")
    cache.set(NODE, bad)
    version = bad.versions[CLUSTER]
    book.record(
        NODE,
        [
            Report(Event.SENT, CLUSTER, version, ("svc",)),
            Report(Event.NACK, CLUSTER, version, ("svc",), "cluster svc: invalid timeout"),
        ],
    )

    clusters = types_of(book)["clusters"]
    assert clusters["state"] == "NACKED"
    assert clusters["desired_version"] == version
    assert clusters["acked_version"] == good.versions[CLUSTER]
    assert clusters["error"] == "cluster svc: invalid timeout"
    assert clusters["rejected_resources"] == ["svc"]
    assert clusters["nacks"] == 1
    assert "error" not in types_of(book)["endpoints"]
    assert not book.synced(NODE)


def test_nack_names_the_resources_the_error_mentions() -> None:
    snapshot = make_snapshot()
    _, book = book_with(snapshot)
    book.connected(NODE, "sotw")
    version = snapshot.versions[CLUSTER]
    book.record(NODE, [Report(Event.NACK, CLUSTER, version, ("svc", "other"), "svc: bad")])
    assert types_of(book)["clusters"]["rejected_resources"] == ["svc"]

    book.record(NODE, [Report(Event.NACK, CLUSTER, version, ("svc", "other"), "bad config")])
    assert types_of(book)["clusters"]["rejected_resources"] == ["svc", "other"]
    assert types_of(book)["clusters"]["nacks"] == 2


def test_a_later_ack_of_a_fixed_version_clears_the_nack() -> None:
    good = make_snapshot()
    cache, book = book_with(good)
    book.connected(NODE, "sotw")
    book.record(NODE, reports(Event.ACK, good))
    bad = make_snapshot(timeout="-1s")
    cache.set(NODE, bad)
    book.record(NODE, [Report(Event.NACK, CLUSTER, bad.versions[CLUSTER], ("svc",), "nope")])
    assert types_of(book)["clusters"]["state"] == "NACKED"

    fixed = make_snapshot(timeout="3s")
    cache.set(NODE, fixed)
    assert types_of(book)["clusters"]["state"] == "STALE"
    book.record(NODE, [Report(Event.ACK, CLUSTER, fixed.versions[CLUSTER], ("svc",))])

    clusters = types_of(book)["clusters"]
    assert clusters["state"] == "SYNCED"
    assert "error" not in clusters
    assert "rejected_resources" not in clusters
    assert book.synced(NODE)


def test_overlapping_streams_keep_the_proxy_connected_until_both_close() -> None:
    snapshot = make_snapshot()
    _, book = book_with(snapshot)
    book.connected(NODE, "sotw")
    book.connected(NODE, "delta")  # a reconnect before the old stream noticed it was gone
    book.record(NODE, reports(Event.ACK, snapshot))

    book.disconnected(NODE)
    status = book.proxy(NODE)
    assert status is not None
    assert status.connected
    assert status.api == "delta"
    assert book.synced(NODE)

    book.disconnected(NODE)
    assert not status.connected
    assert not book.synced(NODE)
    summary = book.summary(NODE)
    assert summary["connected"] is False
    assert {t["state"] for t in types_of(book).values()} == {"DISCONNECTED"}

    book.disconnected(NODE)  # one too many never goes below zero
    book.connected(NODE, "sotw")
    assert status.connected


def test_connected_records_api_and_time() -> None:
    _, book = book_with(make_snapshot())
    book.connected(NODE, "delta")
    status = book.proxy(NODE)
    assert status is not None
    assert (status.api, status.connected_at, status.streams) == ("delta", 1234.5, 1)
    assert book.proxy("nobody") is None
    book.disconnected("nobody")  # unknown proxies are ignored
    assert book.proxy("nobody") is None


def test_change_listeners_hear_about_every_update_until_cancelled() -> None:
    _, book = book_with(make_snapshot())
    heard = Recorder()
    cancel = book.on_change(heard)

    book.connected(NODE, "sotw")
    book.record(NODE, [Report(Event.ACK, CLUSTER, "v")])
    book.record(NODE, [])  # nothing to record, nothing to tell
    book.disconnected(NODE)
    assert heard.seen == [NODE, NODE, NODE]

    cancel()
    book.connected(NODE, "sotw")
    assert heard.seen == [NODE, NODE, NODE]
