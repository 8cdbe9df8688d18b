"""Training (plain torch, no Ray): takes a TrainConfig and a Prepared data set, gives a
trained model in a checkpoint folder plus its validation reports; CLI ``python -m study.train``.

See docs/CONTRACTS.md ("study/train").
"""

from study.train.checkpoint import load_model
from study.train.config import TrainConfig
from study.train.engine import (
    NonFiniteLoss,
    StopTraining,
    copy_checkpoint,
    evaluate,
    preflight,
    resolve_device,
    summarise,
    train,
)

__all__ = ["NonFiniteLoss", "StopTraining", "TrainConfig", "copy_checkpoint", "evaluate",
           "load_model", "preflight", "resolve_device", "summarise", "train"]
