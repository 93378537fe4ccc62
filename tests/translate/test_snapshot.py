"""Snapshot.build: consistency checks and content-hash versions."""

from __future__ import annotations

from typing import Any

import pytest

from gossamer.translate import (
    CLUSTER,
    ENDPOINT,
    LISTENER,
    PUSH_ORDER,
    ROUTE,
    InconsistentSnapshot,
    Resource,
    Snapshot,
)


def eds_cluster(name: str, timeout: str = "1s") -> Resource:
    return Resource(name, {"name": name, "type": "EDS", "connect_timeout": timeout})


def static_cluster(name: str) -> Resource:
    return Resource(
        name, {"name": name, "type": "STATIC", "load_assignment": {"cluster_name": name}}
    )


def endpoints(name: str, port: int = 20001) -> Resource:
    return Resource(name, {"cluster_name": name, "port": port})


def http_listener(name: str, route_config: str) -> Resource:
    hcm = {
        "name": "envoy.filters.network.http_connection_manager",
        "typed_config": {"rds": {"route_config_name": route_config, "config_source": {"ads": {}}}},
    }
    return Resource(name, {"name": name, "filter_chains": [{"filters": [hcm]}]})


def tcp_listener(name: str, cluster: str) -> Resource:
    proxy = {"name": "envoy.filters.network.tcp_proxy", "typed_config": {"cluster": cluster}}
    return Resource(name, {"name": name, "filter_chains": [{"filters": [proxy]}]})


def route_config(name: str, action: dict[str, Any]) -> Resource:
    return Resource(
        name,
        {
            "name": name,
            "virtual_hosts": [{"name": "vh", "domains": ["*"], "routes": [{"route": action}]}],
        },
    )


def weighted(*clusters: str) -> dict[str, Any]:
    return {"weighted_clusters": {"clusters": [{"name": c, "weight": 1} for c in clusters]}}


SHORT = {"clusters": CLUSTER, "endpoints": ENDPOINT, "listeners": LISTENER, "routes": ROUTE}


def valid(**overrides: list[Resource]) -> dict[str, list[Resource]]:
    """A consistent set of resources; ``clusters=[...]`` etc. replace one type."""
    by_type = {
        CLUSTER: [eds_cluster("a"), eds_cluster("b"), static_cluster("local")],
        ENDPOINT: [endpoints("a"), endpoints("b")],
        LISTENER: [http_listener("out", "routes"), tcp_listener("tcp", "local")],
        ROUTE: [route_config("routes", weighted("a", "b"))],
    }
    for short, resources in overrides.items():
        by_type[SHORT[short]] = resources
    return by_type


def test_a_consistent_snapshot_builds_with_resources_sorted_by_name() -> None:
    snapshot = Snapshot.build(valid())
    assert list(snapshot.of(CLUSTER)) == ["a", "b", "local"]
    assert list(snapshot.of(LISTENER)) == ["out", "tcp"]
    assert snapshot.of(ROUTE)["routes"].body["name"] == "routes"
    assert set(snapshot.versions) == set(PUSH_ORDER)


def test_an_empty_snapshot_is_consistent() -> None:
    snapshot = Snapshot.build({})
    for type_url in PUSH_ORDER:
        assert snapshot.of(type_url) == {}
    assert snapshot.of("type.googleapis.com/unknown") == {}


def test_resource_version_is_a_hash_of_its_body() -> None:
    assert eds_cluster("a").version == eds_cluster("a").version
    assert eds_cluster("a").version != eds_cluster("a", "2s").version
    # Key order does not matter.
    assert Resource("x", {"a": 1, "b": 2}).version == Resource("x", {"b": 2, "a": 1}).version
    assert Resource("x", {}, version="pinned").version == "pinned"


def test_listener_referencing_a_missing_route_config() -> None:
    with pytest.raises(InconsistentSnapshot, match="missing route config nowhere"):
        Snapshot.build(valid(listeners=[http_listener("out", "nowhere")]))


def test_listener_referencing_a_missing_cluster() -> None:
    with pytest.raises(InconsistentSnapshot, match="listener references missing cluster gone"):
        Snapshot.build(
            valid(listeners=[http_listener("out", "routes"), tcp_listener("tcp", "gone")])
        )


def test_route_referencing_a_missing_cluster() -> None:
    with pytest.raises(
        InconsistentSnapshot, match="route config routes references missing cluster c"
    ):
        Snapshot.build(valid(routes=[route_config("routes", {"cluster": "c"})]))


def test_route_referencing_a_missing_weighted_cluster() -> None:
    with pytest.raises(
        InconsistentSnapshot, match="route config routes references missing cluster c"
    ):
        Snapshot.build(valid(routes=[route_config("routes", weighted("a", "c"))]))


def test_route_referencing_only_existing_clusters_is_fine() -> None:
    Snapshot.build(valid(routes=[route_config("routes", {"cluster": "local"})]))
    Snapshot.build(valid(routes=[route_config("routes", weighted("b", "local"))]))


def test_eds_cluster_without_endpoints() -> None:
    with pytest.raises(InconsistentSnapshot, match="EDS cluster b has no endpoints"):
        Snapshot.build(valid(endpoints=[endpoints("a")]))


def test_non_eds_cluster_needs_no_endpoints_resource() -> None:
    snapshot = Snapshot.build(valid())
    assert "local" not in snapshot.of(ENDPOINT)


def test_endpoints_without_a_cluster() -> None:
    with pytest.raises(InconsistentSnapshot, match="endpoints orphan belong to no cluster"):
        Snapshot.build(valid(endpoints=[endpoints("a"), endpoints("b"), endpoints("orphan")]))


@pytest.mark.parametrize(
    ("override", "short"),
    [
        (
            {
                "clusters": [
                    eds_cluster("a"),
                    eds_cluster("b"),
                    static_cluster("local"),
                    eds_cluster("a", "2s"),
                ]
            },
            "clusters",
        ),
        ({"endpoints": [endpoints("a"), endpoints("b"), endpoints("a", 1)]}, "endpoints"),
        (
            {"listeners": [http_listener("out", "routes"), tcp_listener("out", "local")]},
            "listeners",
        ),
        ({"routes": [route_config("routes", {"cluster": "a"})] * 2}, "routes"),
    ],
)
def test_duplicate_names(override: dict[str, list[Resource]], short: str) -> None:
    with pytest.raises(InconsistentSnapshot, match=f"duplicate {short} names"):
        Snapshot.build(valid(**override))


def test_equal_content_gives_equal_versions() -> None:
    one = Snapshot.build(valid())
    # Rebuilt from new objects in another order.
    shuffled = {t: list(reversed(rs)) for t, rs in reversed(list(valid().items()))}
    two = Snapshot.build(shuffled)

    assert one.versions == two.versions
    assert one.version == two.version
    assert one == two


@pytest.mark.parametrize(
    ("override", "changed"),
    [
        (
            {"clusters": [eds_cluster("a", "5s"), eds_cluster("b"), static_cluster("local")]},
            CLUSTER,
        ),
        ({"endpoints": [endpoints("a", 30001), endpoints("b")]}, ENDPOINT),
        ({"listeners": [http_listener("out", "routes"), tcp_listener("tcp", "a")]}, LISTENER),
        ({"routes": [route_config("routes", weighted("b", "a"))]}, ROUTE),
    ],
)
def test_changed_content_changes_only_that_types_version(
    override: dict[str, list[Resource]], changed: str
) -> None:
    before = Snapshot.build(valid())
    after = Snapshot.build(valid(**override))

    assert after.versions[changed] != before.versions[changed]
    for type_url in PUSH_ORDER:
        if type_url != changed:
            assert after.versions[type_url] == before.versions[type_url], type_url
    assert after.version != before.version


def test_renaming_a_resource_changes_the_version() -> None:
    before = Snapshot.build({ENDPOINT: [], CLUSTER: [static_cluster("x")]})
    after = Snapshot.build({ENDPOINT: [], CLUSTER: [static_cluster("y")]})
    assert before.versions[CLUSTER] != after.versions[CLUSTER]


def test_adding_a_resource_changes_the_version() -> None:
    before = Snapshot.build({CLUSTER: [static_cluster("x")]})
    after = Snapshot.build({CLUSTER: [static_cluster("x"), static_cluster("y")]})
    assert before.versions[CLUSTER] != after.versions[CLUSTER]
    assert before.versions[LISTENER] == after.versions[LISTENER]
