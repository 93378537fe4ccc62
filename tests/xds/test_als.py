"""Envoy's access log service messages to the file access log's shape."""

from __future__ import annotations

from envoy.data.accesslog.v3 import accesslog_pb2
from envoy.service.accesslog.v3 import als_pb2

from gossamer.translate._access_log import HTTP_FIELDS, TCP_FIELDS
from gossamer.xds._als import entries, response_flags


def test_flags_print_like_envoy() -> None:
    flags = accesslog_pb2.ResponseFlags(
        upstream_connection_failure=True, upstream_retry_limit_exceeded=True
    )
    assert response_flags(flags) == "UF,URX"
    assert response_flags(accesslog_pb2.ResponseFlags()) == "-"


def test_http_and_tcp_entries_have_the_documented_fields() -> None:
    http = accesslog_pb2.HTTPAccessLogEntry(
        protocol_version=accesslog_pb2.HTTPAccessLogEntry.HTTP11,
        request=accesslog_pb2.HTTPRequestProperties(
            request_method=1, path="/a", authority="orders", request_headers={"x-y": "z"}
        ),
        response=accesslog_pb2.HTTPResponseProperties(response_body_bytes=12),
    )
    http.common_properties.upstream_cluster = "outbound|80||orders"
    http.common_properties.response_flags.no_route_found = True
    http.common_properties.start_time.FromMilliseconds(1_700_000_000_123)
    http.common_properties.duration.FromMilliseconds(7)
    http.response.response_code.value = 404
    message = als_pb2.StreamAccessLogsMessage()
    message.http_logs.log_entry.append(http)
    [entry] = entries(message, "client-0", "gossamer-access/outbound")
    assert set(HTTP_FIELDS) | {"node", "direction", "kind", "request_headers"} == set(entry)
    assert entry["method"] == "GET" and entry["response_code"] == 404
    assert entry["response_flags"] == "NR" and entry["duration_ms"] == 7
    assert entry["start_time"] == "2023-11-14T22:13:20.123Z"
    assert entry["direction"] == "outbound" and entry["protocol"] == "HTTP/1.1"
    tcp = accesslog_pb2.TCPAccessLogEntry()
    tcp.connection_properties.received_bytes = 5
    message = als_pb2.StreamAccessLogsMessage()
    message.tcp_logs.log_entry.append(tcp)
    [entry] = entries(message, "client-0", "gossamer-access/outbound")
    assert set(TCP_FIELDS) | {"node", "direction", "kind"} == set(entry)
    assert entry["bytes_received"] == 5 and entry["kind"] == "tcp"
