"""Load, override and validate the one config (see :mod:`tuneline.config.schema`)."""

from tuneline.config.loader import ConfigError, apply_overrides, json_schema, load_config
from tuneline.config.schema import TunelineConfig

__all__ = ["ConfigError", "TunelineConfig", "apply_overrides", "json_schema", "load_config"]
