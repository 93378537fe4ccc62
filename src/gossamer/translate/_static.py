"""A snapshot as one static Envoy bootstrap, for ``envoy --mode validate`` and debugging.

EDS clusters become STATIC with their endpoints inline; RDS becomes an inline route
configuration. The resources are otherwise exactly what the proxy would receive.
"""

from __future__ import annotations

import copy
from typing import Any

from gossamer.translate._snapshot import CLUSTER, ENDPOINT, LISTENER, ROUTE, Snapshot


def static_bootstrap(snapshot: Snapshot, node_id: str = "validate") -> dict[str, Any]:
    endpoints = snapshot.of(ENDPOINT)
    routes = snapshot.of(ROUTE)
    clusters = []
    for name, res in snapshot.of(CLUSTER).items():
        body = copy.deepcopy(dict(res.body))
        if body.get("type") == "EDS":
            body["type"] = "STATIC"
            del body["eds_cluster_config"]
            body["load_assignment"] = copy.deepcopy(dict(endpoints[name].body))
        clusters.append(body)
    listeners = []
    for res in snapshot.of(LISTENER).values():
        body = copy.deepcopy(dict(res.body))
        for chain in body.get("filter_chains", []):
            for f in chain.get("filters", []):
                cfg = f.get("typed_config", {})
                if "rds" in cfg:
                    cfg["route_config"] = copy.deepcopy(
                        dict(routes[cfg.pop("rds")["route_config_name"]].body)
                    )
        listeners.append(body)
    return {
        "node": {"id": node_id, "cluster": node_id},
        "static_resources": {"listeners": listeners, "clusters": clusters},
    }
