"""Training callbacks: hooks into the Trainer's loop (Keras semantics)."""

from nol_fast.training.callbacks.base import MonitorCallback, TrainingCallback
from nol_fast.training.callbacks.early_stopping import EarlyStopping
from nol_fast.training.callbacks.lr_scheduler import LearningRateScheduler
from nol_fast.training.callbacks.memory_profiler import MemoryProfiler
from nol_fast.training.callbacks.metrics_tracker import MetricsTracker
from nol_fast.training.callbacks.model_checkpoint import ModelCheckpoint
from nol_fast.training.callbacks.tensorboard_logger import TensorBoardLogger

__all__ = [
    "EarlyStopping",
    "LearningRateScheduler",
    "MemoryProfiler",
    "MetricsTracker",
    "ModelCheckpoint",
    "MonitorCallback",
    "TensorBoardLogger",
    "TrainingCallback",
]
