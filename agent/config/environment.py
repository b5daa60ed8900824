"""Environment variables that override an instance's config file.

Precedence is flag > environment > file > default. This module never reads
``os.environ`` itself (only the CLI does); it is handed a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.config.model import InstanceConfig
from agent.errors import ConfigError

# Variable -> setting. Names follow Tentacle's container variables.
ENVIRONMENT_SETTINGS: dict[str, str] = {
    "TENTACLE_HOME": "home",
    "TENTACLE_APPLICATION_DIRECTORY": "application_directory",
    "TENTACLE_SERVICE_PORT": "port",
    "TENTACLE_LISTEN_IP": "listen_ip",
    "TENTACLE_NO_LISTEN": "no_listen",
    "TENTACLE_POLLING_CONNECTION_COUNT": "polling_connection_count",
    "TENTACLE_HEARTBEAT_INTERVAL": "heartbeat_interval",
    "TENTACLE_FILE_ROOTS": "file_roots",
    "TENTACLE_MAX_RUNNING_SCRIPTS": "max_running_scripts",
    "TENTACLE_WORKSPACE_CLEANER_DELETE_OLDER_THAN": "workspace_retention",
    "TENTACLE_WORKSPACE_CLEANER_DELAY": "workspace_sweep_interval",
}


def apply_environment(config: InstanceConfig, environ: Mapping[str, str]) -> InstanceConfig:
    """``config`` with every set (non-empty) override variable applied.

    Raises ConfigError naming the variable if its value is invalid.
    """
    for variable, setting in ENVIRONMENT_SETTINGS.items():
        value = environ.get(variable, "")
        if not value:
            continue
        try:
            config = config.with_settings(**{setting: value})
        except ValueError as error:
            raise ConfigError(f"environment variable {variable}: {error}") from None
    return config


def overridden_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Setting name -> the variable overriding it, for those set in ``environ``."""
    return {
        setting: variable
        for variable, setting in ENVIRONMENT_SETTINGS.items()
        if environ.get(variable)
    }
