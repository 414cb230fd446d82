"""tuneloop: turn an LLM app's traffic and feedback into a smaller model of your own."""

__version__ = "0.1.0"
