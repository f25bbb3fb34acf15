"""Logging from `log_config` (a Python logging dictConfig YAML, as Synapse's) or a sane default."""

import logging
import logging.config
import sys

import yaml

from hs.config import ConfigError

_FORMAT = "%(asctime)s - %(name)s - %(process)d - %(levelname)s - %(message)s"


def setup_logging(config) -> None:
    if config.log_config:
        try:
            with open(config.log_config, encoding="utf-8") as f:
                logging.config.dictConfig(yaml.safe_load(f))
        except (OSError, ValueError, TypeError, yaml.YAMLError) as e:
            raise ConfigError(f"{config.log_config}: cannot set up logging: {e}") from None
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
