"""Errors a user can fix: the entry points print their message alone, without a traceback."""


class StnlabError(RuntimeError):
    """Bad input (a config value, a file, a checkpoint); the message names the problem and fix."""


class CheckpointNotFoundError(StnlabError, FileNotFoundError):
    """``ckpt_path`` points at nothing usable."""


class ConfigValueError(StnlabError, ValueError):
    """A config value out of its allowed range or choices (``stnlab.config.validate``); the
    message names the full key, the value given and what is allowed."""


class DataSizeError(ConfigValueError):
    """A data size that the data, once read, cannot give (``data.val_size`` above the digits
    there are): the data module raises it, as ``validate`` cannot know the data's size."""


class DataMismatchError(StnlabError, ValueError):
    """Data that a trained model cannot take (another task, channel count or canvas)."""
