"""The OpenAI-compatible gateway: a team points its OpenAI client's ``base_url`` here; calls are
routed by registry stage (production, canary, shadow), fall back to the teacher, and are logged.

``create_app(config)`` builds the FastAPI app; ``serve(config)`` runs it; ``routing`` holds the
routing decisions as plain functions; ``keys`` manages client API keys.
"""

from tuneloop.gateway.app import create_app
from tuneloop.gateway.keys import KeyScope, create_key, list_keys, revoke_key
from tuneloop.gateway.server import check_bind, serve

__all__ = ["KeyScope", "check_bind", "create_app", "create_key", "list_keys", "revoke_key", "serve"]
