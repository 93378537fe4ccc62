"""Gateway API ``Gateway`` (gateway.networking.k8s.io/v1): an ingress Envoy run by
``gossamer up``, with HTTP and HTTPS listeners. In local mode certificates come from files,
named in the listener's TLS ``options`` (Gateway API's place for implementation settings)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from gossamer.api._common import Hostname, Metadata, Name, Strict, relative_to
from gossamer.model import Gateway, GatewayListener, ListenerProtocol, Origin

CERT_OPTION = "gossamer.dev/certificate-file"
KEY_OPTION = "gossamer.dev/private-key-file"


class TLSSpec(Strict):
    mode: Literal["Terminate"] = "Terminate"
    options: dict[str, str] = Field(default_factory=dict)

    @field_validator("options")
    @classmethod
    def _files(cls, options: dict[str, str]) -> dict[str, str]:
        missing = [k for k in (CERT_OPTION, KEY_OPTION) if not options.get(k)]
        if missing:
            raise ValueError(
                f"TLS termination needs the PEM files in options: missing {missing} "
                f"(paths relative to this file)"
            )
        unknown = sorted(set(options) - {CERT_OPTION, KEY_OPTION})
        if unknown:
            raise ValueError(f"unknown TLS options {unknown}; known: {CERT_OPTION}, {KEY_OPTION}")
        return options


class ListenerSpec(Strict):
    name: Name
    port: int = Field(ge=1, le=65535)
    protocol: Literal["HTTP", "HTTPS"]
    hostname: Hostname | None = None
    tls: TLSSpec | None = None

    @model_validator(mode="after")
    def _tls_for_https(self) -> ListenerSpec:
        if self.protocol == "HTTPS" and self.tls is None:
            raise ValueError("an HTTPS listener needs `tls` with its certificate files")
        if self.protocol == "HTTP" and self.tls is not None:
            raise ValueError("`tls` is for HTTPS listeners; use protocol: HTTPS")
        return self


class GatewaySpec(Strict):
    gatewayClassName: Literal["gossamer"] = "gossamer"
    listeners: list[ListenerSpec] = Field(min_length=1, max_length=64)

    @field_validator("listeners")
    @classmethod
    def _distinct(cls, listeners: list[ListenerSpec]) -> list[ListenerSpec]:
        names = [lst.name for lst in listeners]
        if len(set(names)) != len(names):
            raise ValueError("listener names must be unique")
        by_port: dict[int, set[str]] = {}
        for lst in listeners:
            by_port.setdefault(lst.port, set()).add(lst.protocol)
        mixed = sorted(p for p, protos in by_port.items() if len(protos) > 1)
        if mixed:
            raise ValueError(f"port(s) {mixed} mix HTTP and HTTPS listeners")
        keys = [(lst.port, lst.hostname) for lst in listeners]
        if len(set(keys)) != len(keys):
            raise ValueError("two listeners share a port and hostname")
        return listeners


class GatewayDoc(Strict):
    apiVersion: Literal["gateway.networking.k8s.io/v1"]
    kind: Literal["Gateway"]
    metadata: Metadata
    spec: GatewaySpec

    def to_model(self, origin: Origin, base_dir: str) -> Gateway:
        return Gateway(
            name=self.metadata.name,
            listeners=tuple(
                GatewayListener(
                    name=lst.name,
                    port=lst.port,
                    protocol=ListenerProtocol(lst.protocol),
                    hostname=lst.hostname,
                    certificate_file=relative_to(base_dir, lst.tls.options[CERT_OPTION])
                    if lst.tls
                    else "",
                    private_key_file=relative_to(base_dir, lst.tls.options[KEY_OPTION])
                    if lst.tls
                    else "",
                )
                for lst in self.spec.listeners
            ),
            origin=origin,
        )
