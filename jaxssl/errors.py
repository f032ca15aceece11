"""The errors a user can cause and fix, under one base class.

Each command line catches ``UserError`` once and prints its message as one paragraph (exit
status 1); anything else is a bug and keeps its traceback. Every message says what was wrong
and how to fix it, and a config error names the config key. Imports nothing from jaxssl: any
layer may raise these.
"""


class UserError(Exception):
  """Something the user can fix: a config, a dataset, a workdir, a cluster setting."""


class ConfigError(UserError, ValueError):
  """A config value that cannot work; the message names the key (``config.a.b``)."""


class DatasetError(UserError, ValueError):
  """A dataset that cannot be opened or read as asked."""


class CheckpointError(UserError, RuntimeError):
  """A workdir or checkpoint that cannot be used; the message names the path."""


class DistributedError(UserError, RuntimeError):
  """A multi-process setting that cannot work."""


class NonFiniteError(UserError, FloatingPointError):
  """A loss term or the gradient norm went NaN or inf."""


def first_line(err: BaseException, limit: int = 500) -> str:
  """The first line of ``err``'s message, at most ``limit`` characters: what a one-paragraph
  error quotes of a library's exception."""
  text = str(err).strip()
  return text.splitlines()[0][:limit] if text else ""
