"""Configuration: typed sections, the file search path, env overrides and the template."""

from open_clanker.config.loader import LoadedConfig, load_config, semantic_problems
from open_clanker.config.model import (
    AccessConfig,
    BusConfig,
    ChannelsConfig,
    Config,
    LimitsConfig,
    LoggingConfig,
    ServerConfig,
    StorageConfig,
    TLSConfig,
    WebchatConfig,
)
from open_clanker.config.paths import data_dir, default_storage_url, token_file
from open_clanker.config.template import TEMPLATE

__all__ = [
    "TEMPLATE",
    "AccessConfig",
    "BusConfig",
    "ChannelsConfig",
    "Config",
    "LimitsConfig",
    "LoadedConfig",
    "LoggingConfig",
    "ServerConfig",
    "StorageConfig",
    "TLSConfig",
    "WebchatConfig",
    "data_dir",
    "default_storage_url",
    "load_config",
    "semantic_problems",
    "token_file",
]
