"""Model clients behind one interface, and ``build_provider`` to make one from a spec string.

Specs: ``callable:module:function``, ``local:PATH_OR_ID`` (optionally ``+ADAPTER_PATH``),
``registry:TASK@vN``. Remote providers (OpenAI-compatible, Anthropic) and the fallback chain
plug in here too.
"""

from tuneloop.providers.base import Completion, Message, Provider
from tuneloop.providers.callable import CallableProvider, import_object
from tuneloop.providers.factory import build_provider

__all__ = [
    "CallableProvider",
    "Completion",
    "Message",
    "Provider",
    "build_provider",
    "import_object",
]
