"""Hosted fine-tuning backends (OpenAI, Together) behind one protocol; see ``base``."""

from tuneloop.train.hosted.base import (
    HostedBackend,
    RemoteCheckpoint,
    RemoteEvent,
    RemoteJob,
    UploadPlan,
)

__all__ = ["HostedBackend", "RemoteCheckpoint", "RemoteEvent", "RemoteJob", "UploadPlan"]
