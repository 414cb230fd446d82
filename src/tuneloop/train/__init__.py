"""Train stage: a dataset version in, a registered model version out.

Backends: ``local`` (PyTorch + PEFT LoRA, run in this process by ``train_model``) and the
hosted ``openai`` and ``together`` (``submit`` a job, ``watch`` it from any process). Every
backend uses the one job model of ``tuneloop.store`` (row, state machine, events) and ends
in a registered version.
"""

from tuneloop.train.jobs import Watched, backend_for, cancel, finish, poll, submit, watch
from tuneloop.train.run import resume_training, train_model

__all__ = [
    "Watched",
    "backend_for",
    "cancel",
    "finish",
    "poll",
    "resume_training",
    "submit",
    "train_model",
    "watch",
]
