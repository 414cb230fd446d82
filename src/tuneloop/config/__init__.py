"""One typed configuration, read from ``tuneloop.toml`` with ``TUNELOOP_*`` environment overrides.

Precedence, lowest first: the defaults of the sections (``models.py``, ``train.py``), the TOML
file, then environment variables named ``TUNELOOP_<SECTION>__<KEY>`` (for example
``TUNELOOP_TRAIN__EPOCHS=5``, or ``TUNELOOP_WORKSPACE`` for a top-level key). Secrets never live
here: provider settings name the environment variable that holds a key, and a secret-looking key
with a value in the file is refused. ``loading.py`` reads the file and the environment and writes
the commented default file.
"""

from tuneloop.config.loading import (
    ConfigWarning,
    load_config,
    redact_url,
    render_default_config,
)
from tuneloop.config.models import (
    BUILTIN_BASE_MODEL,
    CONFIG_FILENAME,
    ENV_PREFIX,
    NOT_CONFIG_VARIABLES,
    SECRET_HEADERS,
    SECRET_KEY_NAMES,
    URL_PASSWORD,
    BreakerConfig,
    CaptureConfig,
    Config,
    CurateConfig,
    EvaluateConfig,
    GatewayConfig,
    OutputConfig,
    PriceConfig,
    ProviderSettings,
    RewardTable,
    Section,
    StoreConfig,
    TrafficConfig,
)
from tuneloop.config.train import (
    HostedSettings,
    OpenAITrainConfig,
    TogetherTrainConfig,
    TrainConfig,
)

__all__ = [
    "BUILTIN_BASE_MODEL",
    "CONFIG_FILENAME",
    "ENV_PREFIX",
    "NOT_CONFIG_VARIABLES",
    "SECRET_HEADERS",
    "SECRET_KEY_NAMES",
    "URL_PASSWORD",
    "BreakerConfig",
    "CaptureConfig",
    "Config",
    "ConfigWarning",
    "CurateConfig",
    "EvaluateConfig",
    "GatewayConfig",
    "HostedSettings",
    "OpenAITrainConfig",
    "OutputConfig",
    "PriceConfig",
    "ProviderSettings",
    "RewardTable",
    "Section",
    "StoreConfig",
    "TogetherTrainConfig",
    "TrafficConfig",
    "TrainConfig",
    "load_config",
    "redact_url",
    "render_default_config",
]
