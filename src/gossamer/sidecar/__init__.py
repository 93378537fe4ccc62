"""Running sidecars: bootstrap, Envoy process supervision, ordered start and stop."""

from gossamer.sidecar._bootstrap import XdsApi, bootstrap
from gossamer.sidecar._envoy import EnvoyNotFound, envoy_command, envoy_path
from gossamer.sidecar._instance import (
    AppNotReady,
    ConfigTimeout,
    GatewayRunner,
    InstanceRunner,
    app_environment,
    app_path,
    raise_fd_limit,
)
from gossamer.sidecar._process import ManagedProcess, StartError, process_argv, process_environ

__all__ = [
    "AppNotReady",
    "ConfigTimeout",
    "EnvoyNotFound",
    "GatewayRunner",
    "InstanceRunner",
    "ManagedProcess",
    "StartError",
    "XdsApi",
    "app_environment",
    "app_path",
    "bootstrap",
    "envoy_command",
    "envoy_path",
    "process_argv",
    "process_environ",
    "raise_fd_limit",
]
