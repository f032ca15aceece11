"""The errors a user can cause and fix, under one base class.

Each command line catches ``UserError`` once and prints its message as one paragraph (exit
status 1); anything else is a bug and keeps its traceback. Every message says what was wrong
and how to fix it, and a config error names the config key. Imports nothing from jaxssl: any
layer may raise these.
"""


class UserError(Exception):
  """Something the user can fix: a config, a dataset, a workdir, a cluster setting.

  ``summary`` says what and how to fix it; ``details`` (optional) is what a library said, in
  full, printed after it as a paragraph of its own."""

  def __init__(self, summary: str = "", *, details: str | None = None):
    super().__init__(summary)
    self.summary, self.details = summary, details

  def __str__(self) -> str:
    return self.summary + (f"\n\n{self.details}" if self.details else "")


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


def root_cause(err: BaseException) -> BaseException:
  """The innermost exception ``err`` was raised from (``__cause__``, else ``__context__``):
  where a library wraps the useful message (a file and what is wrong with it) in a long one."""
  seen = {id(err)}
  while True:
    inner = err.__cause__ or err.__context__
    if inner is None or id(inner) in seen:
      return err
    seen.add(id(inner))
    err = inner
