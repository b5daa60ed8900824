"""Instance configuration: frozen settings, the YAML file, environment overrides, the index."""

from agent.config.document import load_config, parse_config, render_config, save_config
from agent.config.environment import ENVIRONMENT_SETTINGS, apply_environment
from agent.config.index import InstanceEntry, InstanceIndex, instance_slug
from agent.config.model import DEFAULT_PORT, InstanceConfig
from agent.config.trust import TrustedPeer

__all__ = [
    "DEFAULT_PORT",
    "ENVIRONMENT_SETTINGS",
    "InstanceConfig",
    "InstanceEntry",
    "InstanceIndex",
    "TrustedPeer",
    "apply_environment",
    "instance_slug",
    "load_config",
    "parse_config",
    "render_config",
    "save_config",
]
