"""Typed config, YAML section composition and validation."""

from lmforge.config.loader import dump_config, load_config
from lmforge.config.schema import Config

__all__ = ["Config", "dump_config", "load_config"]
