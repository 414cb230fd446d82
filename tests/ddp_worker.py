"""Run by test_train_recipe under ``accelerate launch``: one process of a data-parallel run.

Arguments: a TrainConfig as JSON, a JSON file of chat examples, the output folder.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tuneloop.config import TrainConfig
from tuneloop.train.recipe import finetune

if __name__ == "__main__":
    config = TrainConfig.model_validate_json(sys.argv[1])
    examples = json.loads(Path(sys.argv[2]).read_text())
    result = finetune(config, examples, examples[:2], Path(sys.argv[3]))
    print(json.dumps({"processes": result.processes, "steps": result.steps}), flush=True)
