"""What every config section shares: the base class and the config's fixed names."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict

CONFIG_FILENAME = "tuneloop.toml"
ENV_PREFIX = "TUNELOOP_"
NOT_CONFIG_VARIABLES = frozenset({"TUNELOOP_CONFIG"})  # read by tuneloop, but not config keys
URL_PASSWORD = re.compile(r"(://[^:/@\s]*:)[^@\s]*@")
BUILTIN_BASE_MODEL = "builtin:tiny"
SECRET_KEY_NAMES = ("api_key", "apikey", "secret", "password", "token")


class Section(BaseModel):
    """A config table: unknown keys are errors, so a typo never silently does nothing."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
