"""Environment variables that override an instance's config file.

Precedence is flag > environment > file > default. The variables are the
table's (agent.config.model, names after Tentacle's container variables).
This module never reads ``os.environ`` itself (only the CLI does); it is
handed a mapping.
"""

from __future__ import annotations

from collections.abc import Mapping

from agent.config import settings
from agent.config.model import InstanceConfig

# Variable -> setting.
ENVIRONMENT_SETTINGS: dict[str, str] = settings.environment_of(InstanceConfig)


def apply_environment(config: InstanceConfig, environ: Mapping[str, str]) -> InstanceConfig:
    """``config`` with every set (non-empty) override variable applied.

    Raises ConfigError naming the variable if its value is invalid.
    """
    return settings.apply_environment(config, environ)


def overridden_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """Setting name -> the variable overriding it, for those set in ``environ``."""
    return settings.overridden_settings(InstanceConfig, environ)
