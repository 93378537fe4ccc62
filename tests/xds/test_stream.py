"""The sans-IO ADS state machines, driven the way an Envoy would drive them."""

from __future__ import annotations

from typing import Any

from gossamer.translate import CLUSTER, ENDPOINT, LISTENER, ROUTE, Resource, Snapshot
from gossamer.xds import (
    DeltaStream,
    Event,
    Report,
    Request,
    Response,
    SnapshotCache,
    SotwStream,
    StatusBook,
)

A, B = "svc-a", "svc-b"
DEFAULT_ENDPOINTS = {A: 20001, B: 20002}


def make_snapshot(
    endpoints: dict[str, int] | None = None,
    *,
    timeouts: dict[str, str] | None = None,
    listener_port: int = 15001,
    route_timeout: str = "15s",
) -> Snapshot:
    """Clusters (EDS) with their endpoints, one listener and its route config.

    ``endpoints`` maps a cluster name to its one endpoint's port (EDS content);
    ``timeouts`` changes a cluster's connect timeout (CDS content).
    """
    endpoints = DEFAULT_ENDPOINTS if endpoints is None else endpoints
    timeouts = timeouts or {}
    clusters = [
        Resource(n, {"name": n, "type": "EDS", "connect_timeout": timeouts.get(n, "1s")})
        for n in endpoints
    ]
    assignments = [
        Resource(
            n,
            {
                "cluster_name": n,
                "endpoints": [
                    {
                        "lb_endpoints": [
                            {
                                "endpoint": {
                                    "address": {
                                        "socket_address": {"address": "127.0.0.1", "port_value": p}
                                    }
                                }
                            }
                        ]
                    }
                ],
            },
        )
        for n, p in endpoints.items()
    ]
    listeners = [
        Resource(
            "outbound",
            {"name": "outbound", "port": listener_port, "rds": {"route_config_name": "routes"}},
        )
    ]
    routes = [
        Resource(
            "routes",
            {
                "name": "routes",
                "virtual_hosts": [
                    {"name": n, "routes": [{"route": {"cluster": n, "timeout": route_timeout}}]}
                    for n in endpoints
                ],
            },
        )
    ]
    return Snapshot.build(
        {CLUSTER: clusters, ENDPOINT: assignments, LISTENER: listeners, ROUTE: routes}
    )


def names(resp: Response) -> list[str]:
    return [r.name for r in resp.resources]


def by_type(responses: list[Response]) -> dict[str, Response]:
    out = {r.type_url: r for r in responses}
    assert len(out) == len(responses), "more than one response per type"
    return out


def events(reports: list[Report]) -> list[tuple[Event, str]]:
    return [(r.event, r.type_url) for r in reports]


# --- SotW ----------------------------------------------------------------------------------


def sotw_ack(
    stream: SotwStream, resp: Response, snapshot: Snapshot | None, **kw: Any
) -> list[Response]:
    names_ = kw.pop("resource_names", None)
    if names_ is None:
        names_ = () if resp.type_url in (CLUSTER, LISTENER) else tuple(names(resp))
    return stream.on_request(
        Request(
            resp.type_url, nonce=resp.nonce, version_info=resp.version, resource_names=names_, **kw
        ),
        snapshot,
    )


def sotw_synced(snapshot: Snapshot) -> tuple[SotwStream, dict[str, Response]]:
    """A stream where the proxy subscribed to everything and ACKed all of ``snapshot``."""
    stream = SotwStream()
    sent: dict[str, Response] = {}
    for type_url, subscribe in (
        (CLUSTER, ()),
        (ENDPOINT, (A, B)),
        (LISTENER, ()),
        (ROUTE, ("routes",)),
    ):
        for resp in stream.on_request(Request(type_url, resource_names=subscribe), snapshot):
            sent[resp.type_url] = resp
    for resp in list(sent.values()):
        assert sotw_ack(stream, resp, snapshot) == []
    stream.drain_reports()
    return stream, sent


def test_sotw_sends_nothing_before_a_snapshot_exists() -> None:
    stream = SotwStream()
    assert stream.on_request(Request(CLUSTER), None) == []
    assert stream.drain_reports() == []

    snapshot = make_snapshot()
    (resp,) = stream.on_snapshot(snapshot)

    assert resp.type_url == CLUSTER
    assert resp.version == snapshot.versions[CLUSTER]
    assert names(resp) == [A, B]
    assert resp.nonce
    assert stream.drain_reports() == [Report(Event.SENT, CLUSTER, resp.version, (A, B))]


def test_sotw_answers_a_request_when_the_snapshot_exists() -> None:
    stream = SotwStream()
    snapshot = make_snapshot()
    (resp,) = stream.on_request(Request(LISTENER), snapshot)
    assert resp.type_url == LISTENER
    assert names(resp) == ["outbound"]
    assert resp.resources == tuple(snapshot.of(LISTENER).values())


def test_sotw_snapshot_only_pushes_types_that_were_requested() -> None:
    stream = SotwStream()
    stream.on_request(Request(CLUSTER), None)
    assert [r.type_url for r in stream.on_snapshot(make_snapshot())] == [CLUSTER]


def test_sotw_ack_is_reported() -> None:
    stream = SotwStream()
    snapshot = make_snapshot()
    (resp,) = stream.on_request(Request(CLUSTER), snapshot)
    stream.drain_reports()

    assert sotw_ack(stream, resp, snapshot) == []
    assert stream.drain_reports() == [Report(Event.ACK, CLUSTER, resp.version, (A, B))]
    assert stream.drain_reports() == []


def test_sotw_nonces_are_unique() -> None:
    stream = SotwStream()
    responses = [stream.on_request(Request(t), make_snapshot())[0] for t in (CLUSTER, LISTENER)]
    responses += stream.on_snapshot(make_snapshot(listener_port=1, timeouts={A: "2s"}))
    nonces = [r.nonce for r in responses]
    assert len(nonces) == len(set(nonces))


def test_sotw_stale_nonce_is_ignored() -> None:
    stream = SotwStream()
    old = make_snapshot()
    (first,) = stream.on_request(Request(CLUSTER), old)
    new = make_snapshot(timeouts={A: "2s"})
    (second,) = stream.on_snapshot(new)
    stream.drain_reports()

    # The proxy ACKs the first response after the second is already on its way.
    assert sotw_ack(stream, first, new) == []
    assert stream.drain_reports() == []
    # A stale NACK is ignored just the same.
    assert sotw_ack(stream, first, new, error="late") == []
    assert stream.drain_reports() == []

    assert sotw_ack(stream, second, new) == []
    assert stream.drain_reports() == [Report(Event.ACK, CLUSTER, second.version, (A, B))]


def test_sotw_nack_is_reported_and_the_rejected_version_is_not_resent() -> None:
    stream = SotwStream()
    snapshot = make_snapshot()
    (resp,) = stream.on_request(Request(CLUSTER), snapshot)
    stream.drain_reports()

    nack = Request(CLUSTER, nonce=resp.nonce, version_info="", error="bad cluster svc-a")
    assert stream.on_request(nack, snapshot) == []
    assert stream.drain_reports() == [
        Report(Event.NACK, CLUSTER, resp.version, (A, B), "bad cluster svc-a")
    ]

    # The same content again (even as a new object) is not pushed again...
    assert stream.on_snapshot(snapshot) == []
    assert stream.on_snapshot(make_snapshot()) == []
    assert stream.drain_reports() == []

    # ...but a different version is.
    fixed = make_snapshot(timeouts={A: "3s"})
    (again,) = stream.on_snapshot(fixed)
    assert again.type_url == CLUSTER
    assert again.version == fixed.versions[CLUSTER] != resp.version


def test_sotw_cluster_change_forces_an_endpoint_resend() -> None:
    old = make_snapshot()
    stream, sent = sotw_synced(old)
    new = make_snapshot(timeouts={A: "5s"})
    assert new.versions[ENDPOINT] == old.versions[ENDPOINT]

    responses = stream.on_snapshot(new)

    assert [r.type_url for r in responses] == [CLUSTER, ENDPOINT]
    cds, eds = responses
    assert cds.version == new.versions[CLUSTER] != sent[CLUSTER].version
    assert eds.version == sent[ENDPOINT].version
    assert names(eds) == [A, B]
    assert eds.nonce != sent[ENDPOINT].nonce


def test_sotw_endpoint_change_alone_sends_only_endpoints() -> None:
    stream, sent = sotw_synced(make_snapshot())
    new = make_snapshot({A: 30001, B: 20002})

    (resp,) = stream.on_snapshot(new)

    assert resp.type_url == ENDPOINT
    assert resp.version == new.versions[ENDPOINT] != sent[ENDPOINT].version


def test_sotw_unchanged_snapshot_sends_nothing() -> None:
    stream, _ = sotw_synced(make_snapshot())
    assert stream.on_snapshot(make_snapshot()) == []
    assert stream.drain_reports() == []


def test_sotw_responses_go_out_clusters_endpoints_listeners_routes() -> None:
    stream = SotwStream()
    for type_url, subscribe in (
        (ROUTE, ("routes",)),
        (LISTENER, ()),
        (ENDPOINT, (A,)),
        (CLUSTER, ()),
    ):
        assert stream.on_request(Request(type_url, resource_names=subscribe), None) == []

    responses = stream.on_snapshot(make_snapshot())

    assert [r.type_url for r in responses] == [CLUSTER, ENDPOINT, LISTENER, ROUTE]

    # And again when everything changes at once.
    for resp in responses:
        sotw_ack(stream, resp, None)
    changed = make_snapshot({A: 1, B: 2}, timeouts={A: "9s"}, listener_port=2, route_timeout="1s")
    assert [r.type_url for r in stream.on_snapshot(changed)] == [CLUSTER, ENDPOINT, LISTENER, ROUTE]


def test_sotw_named_endpoint_subscription_returns_only_requested_names() -> None:
    stream = SotwStream()
    snapshot = make_snapshot()
    (resp,) = stream.on_request(Request(ENDPOINT, resource_names=(A,)), snapshot)
    assert names(resp) == [A]

    # The proxy subscribes to one more name in its ACK: the same version, more resources.
    (wider,) = sotw_ack(stream, resp, snapshot, resource_names=(A, B))
    assert names(wider) == [A, B]
    assert wider.version == resp.version

    # Names the snapshot lacks are simply absent.
    (narrow,) = sotw_ack(stream, wider, snapshot, resource_names=("svc-missing",))
    assert names(narrow) == []


def test_sotw_named_subscription_is_not_resent_for_changes_to_other_names() -> None:
    stream = SotwStream()
    (resp,) = stream.on_request(Request(ENDPOINT, resource_names=(A,)), make_snapshot())
    sotw_ack(stream, resp, None, resource_names=(A,))
    # svc-b's endpoints change; the type's version changes, so SotW sends (A only) again.
    (again,) = stream.on_snapshot(make_snapshot({A: 20001, B: 1}))
    assert names(again) == [A]


def test_sotw_reconnect_with_current_version_sends_nothing_for_that_type() -> None:
    snapshot = make_snapshot()
    stream = SotwStream()

    assert (
        stream.on_request(Request(CLUSTER, version_info=snapshot.versions[CLUSTER]), snapshot) == []
    )
    assert (
        stream.on_request(Request(LISTENER, version_info=snapshot.versions[LISTENER]), snapshot)
        == []
    )
    # Named types carry no such shortcut: a reconnecting proxy gets its endpoints again.
    (eds,) = stream.on_request(
        Request(ENDPOINT, version_info=snapshot.versions[ENDPOINT], resource_names=(A, B)), snapshot
    )
    assert names(eds) == [A, B]
    # Nothing more on an equal snapshot; a change is sent as usual.
    assert stream.on_snapshot(make_snapshot()) == []
    new = make_snapshot(timeouts={B: "2s"})
    assert [r.type_url for r in stream.on_snapshot(new)] == [CLUSTER, ENDPOINT]


def test_sotw_reconnect_with_an_old_version_gets_the_current_one() -> None:
    snapshot = make_snapshot()
    stream = SotwStream()
    (resp,) = stream.on_request(Request(CLUSTER, version_info="an-old-version"), snapshot)
    assert resp.version == snapshot.versions[CLUSTER]
    assert names(resp) == [A, B]


def test_sotw_reconnect_with_current_versions_counts_as_synced() -> None:
    snapshot = make_snapshot()
    cache = SnapshotCache()
    cache.set("web-0", snapshot)
    book = StatusBook(cache)

    # The first stream sends clusters; the connection drops before the ACK arrives.
    first = SotwStream()
    book.connected("web-0", "sotw")
    first.on_request(Request(CLUSTER), snapshot)
    book.record("web-0", first.drain_reports())
    book.disconnected("web-0")

    # The proxy reconnects, saying it holds the current version of every type.
    second = SotwStream()
    book.connected("web-0", "sotw")
    for type_url, subscribe in (
        (CLUSTER, ()),
        (ENDPOINT, (A, B)),
        (LISTENER, ()),
        (ROUTE, ("routes",)),
    ):
        req = Request(type_url, version_info=snapshot.versions[type_url], resource_names=subscribe)
        for resp in second.on_request(req, snapshot):
            sotw_ack(second, resp, snapshot)
    book.record("web-0", second.drain_reports())

    assert book.synced("web-0")


# --- Delta ---------------------------------------------------------------------------------


def delta_ack(
    stream: DeltaStream, resp: Response, snapshot: Snapshot | None, **kw: Any
) -> list[Response]:
    return stream.on_request(Request(resp.type_url, nonce=resp.nonce, **kw), snapshot)


def delta_synced(snapshot: Snapshot) -> tuple[DeltaStream, dict[str, Response]]:
    stream = DeltaStream()
    sent: dict[str, Response] = {}
    for type_url, subscribe in (
        (CLUSTER, ()),
        (ENDPOINT, (A, B)),
        (LISTENER, ()),
        (ROUTE, ("routes",)),
    ):
        for resp in stream.on_request(Request(type_url, resource_names=subscribe), snapshot):
            sent[resp.type_url] = resp
    for resp in list(sent.values()):
        assert delta_ack(stream, resp, snapshot) == []
    stream.drain_reports()
    return stream, sent


def test_delta_sends_nothing_before_a_snapshot_exists() -> None:
    stream = DeltaStream()
    assert stream.on_request(Request(CLUSTER), None) == []
    assert stream.drain_reports() == []

    snapshot = make_snapshot()
    (resp,) = stream.on_snapshot(snapshot)
    assert resp.type_url == CLUSTER
    assert names(resp) == [A, B]
    assert resp.removed == ()
    assert resp.version == snapshot.versions[CLUSTER]


def test_delta_initial_wildcard_gets_everything_and_named_types_get_their_names() -> None:
    snapshot = make_snapshot()
    _, sent = delta_synced(snapshot)
    assert names(sent[CLUSTER]) == [A, B]
    assert names(sent[LISTENER]) == ["outbound"]
    assert names(sent[ENDPOINT]) == [A, B]
    assert names(sent[ROUTE]) == ["routes"]
    assert sent[CLUSTER].resources == tuple(snapshot.of(CLUSTER).values())

    named = DeltaStream()
    (resp,) = named.on_request(Request(ENDPOINT, resource_names=(B,)), snapshot)
    assert names(resp) == [B]


def test_delta_explicit_wildcard_name() -> None:
    stream = DeltaStream()
    (resp,) = stream.on_request(Request(CLUSTER, resource_names=("*",)), make_snapshot())
    assert names(resp) == [A, B]


def test_delta_ack_is_reported() -> None:
    stream = DeltaStream()
    snapshot = make_snapshot()
    (resp,) = stream.on_request(Request(CLUSTER), snapshot)
    assert stream.drain_reports() == [Report(Event.SENT, CLUSTER, resp.version, (A, B))]

    assert delta_ack(stream, resp, snapshot) == []
    reports = stream.drain_reports()
    assert Report(Event.ACK, CLUSTER, resp.version, (A, B)) in reports
    assert all(r.event is Event.ACK for r in reports)


def test_delta_sends_only_the_changed_resource() -> None:
    stream, _ = delta_synced(make_snapshot())
    new = make_snapshot({A: 20001, B: 30002})

    (resp,) = stream.on_snapshot(new)

    assert resp.type_url == ENDPOINT
    assert names(resp) == [B]
    assert resp.resources[0] == new.of(ENDPOINT)[B]
    assert resp.removed == ()


def test_delta_cluster_change_resends_that_clusters_endpoints() -> None:
    old = make_snapshot()
    stream, _ = delta_synced(old)
    new = make_snapshot(timeouts={A: "5s"})

    responses = stream.on_snapshot(new)

    assert [r.type_url for r in responses] == [CLUSTER, ENDPOINT]
    cds, eds = responses
    assert names(cds) == [A]
    assert names(eds) == [A]
    assert eds.resources[0].version == old.of(ENDPOINT)[A].version


def test_delta_removed_resource_is_listed_in_removed() -> None:
    stream, _ = delta_synced(make_snapshot())

    responses = by_type(stream.on_snapshot(make_snapshot({A: 20001})))

    assert responses[CLUSTER].removed == (B,)
    assert responses[CLUSTER].resources == ()
    assert responses[ENDPOINT].removed == (B,)
    assert names(responses[ROUTE]) == ["routes"]  # its virtual hosts changed
    assert LISTENER not in responses


def test_delta_removed_resource_that_returns_is_sent_again() -> None:
    stream, _ = delta_synced(make_snapshot())
    for resp in stream.on_snapshot(make_snapshot({A: 20001})):
        delta_ack(stream, resp, None)

    responses = by_type(stream.on_snapshot(make_snapshot()))

    assert names(responses[CLUSTER]) == [B]
    assert names(responses[ENDPOINT]) == [B]


def test_delta_unsubscribe() -> None:
    snapshot = make_snapshot()
    stream, _ = delta_synced(snapshot)

    assert stream.on_request(Request(ENDPOINT, unsubscribe=(B,)), snapshot) == []

    # svc-b's endpoints change: nothing to send, the proxy no longer wants them.
    assert stream.on_snapshot(make_snapshot({A: 20001, B: 1})) == []
    # svc-a's still reach it.
    (resp,) = stream.on_snapshot(make_snapshot({A: 2, B: 1}))
    assert names(resp) == [A]
    assert resp.removed == ()

    # Subscribing again sends the current resource.
    (back,) = stream.on_request(Request(ENDPOINT, resource_names=(B,)), make_snapshot({A: 2, B: 1}))
    assert names(back) == [B]


def test_delta_nack_rolls_back_and_the_rejected_version_is_not_resent() -> None:
    stream, _ = delta_synced(make_snapshot())
    bad = make_snapshot(timeouts={A: "bad"})
    cds, eds = stream.on_snapshot(bad)
    delta_ack(stream, eds, bad)
    stream.drain_reports()

    assert delta_ack(stream, cds, bad, error="invalid connect_timeout") == []
    nacks = [r for r in stream.drain_reports() if r.event is Event.NACK]
    assert nacks == [
        Report(Event.NACK, CLUSTER, bad.versions[CLUSTER], (A,), "invalid connect_timeout")
    ]

    # The same content is not sent again.
    assert stream.on_snapshot(bad) == []
    assert stream.on_snapshot(make_snapshot(timeouts={A: "bad"})) == []

    # A change elsewhere is sent without the rejected resource.
    other = make_snapshot(timeouts={A: "bad", B: "2s"})
    cds2, _ = stream.on_snapshot(other)
    assert names(cds2) == [B]
    delta_ack(stream, cds2, other)

    # A new version of the rejected resource is sent.
    fixed = make_snapshot(timeouts={A: "3s", B: "2s"})
    cds3, eds3 = stream.on_snapshot(fixed)
    assert names(cds3) == [A]
    assert cds3.resources[0] == fixed.of(CLUSTER)[A]
    assert names(eds3) == [A]


def test_delta_nack_rollback_makes_the_last_good_version_current_again() -> None:
    good = make_snapshot()
    stream, _ = delta_synced(good)
    bad = make_snapshot(timeouts={A: "bad"})
    cds, eds = stream.on_snapshot(bad)
    delta_ack(stream, eds, bad)
    delta_ack(stream, cds, bad, error="nope")

    # Going back to the version the proxy still holds needs no push.
    assert stream.on_snapshot(good) == []


def test_delta_initial_resource_versions_suppress_what_the_proxy_has() -> None:
    snapshot = make_snapshot()
    stream = DeltaStream()
    have = {A: snapshot.of(CLUSTER)[A].version, B: "outdated", "svc-gone": "v0"}

    (resp,) = stream.on_request(Request(CLUSTER, initial_versions=have), snapshot)

    assert names(resp) == [B]
    assert resp.removed == ("svc-gone",)


def test_delta_initial_versions_matching_everything_send_an_empty_response_once() -> None:
    snapshot = make_snapshot()
    stream = DeltaStream()
    have = {n: r.version for n, r in snapshot.of(CLUSTER).items()}

    (resp,) = stream.on_request(Request(CLUSTER, initial_versions=have), snapshot)

    assert resp.resources == ()
    assert resp.removed == ()
    delta_ack(stream, resp, snapshot)
    assert stream.on_snapshot(snapshot) == []


def test_delta_nack_stays_visible_in_the_status_book() -> None:
    good = make_snapshot()
    cache = SnapshotCache()
    cache.set("web-0", good)
    book = StatusBook(cache)
    book.connected("web-0", "delta")
    stream, _ = delta_synced(good)

    bad = make_snapshot(timeouts={A: "bad"})
    cache.set("web-0", bad)
    cds, eds = stream.on_snapshot(bad)
    delta_ack(stream, eds, bad)
    delta_ack(stream, cds, bad, error="invalid connect_timeout")
    reports = stream.drain_reports()
    book.record("web-0", reports)

    summary = book.summary("web-0")
    assert summary["types"]["clusters"]["state"] == "NACKED"  # type: ignore[index]
    assert not book.synced("web-0")
    assert Report(Event.ACK, CLUSTER, bad.versions[CLUSTER]) not in reports
