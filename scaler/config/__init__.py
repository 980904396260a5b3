"""Configuration: HOCON loading, the typed model, vault merging and validation."""

from scaler.config.loading import ConfigFileError, LoadResult, build_config, load_config, parse_hocon
from scaler.config.model import AgentCredentials, Config, GitSettings, Resource, ScalerSettings

__all__ = [
    "AgentCredentials",
    "Config",
    "ConfigFileError",
    "GitSettings",
    "LoadResult",
    "Resource",
    "ScalerSettings",
    "build_config",
    "load_config",
    "parse_hocon",
]
