"""Train stage: a dataset version in, a registered model version out.

Backends: ``local`` (PyTorch + PEFT LoRA, this package). Hosted jobs (OpenAI, Together) plug in
beside it with the same contract: job row, events, a registered version.
"""

from tuneloop.train.run import train_model

__all__ = ["train_model"]
