"""Evaluation protocols as evaluators, chosen by name from the config's ``evals`` section.

One small class per protocol (as big_vision's evaluators): built from its entry
``config.evals.<name>``, its ``run(context)`` yields ``(name, value)`` pairs. The report, the
printed table and the training log are built from whatever names come back. Every entry has
``offline`` (in the default set of ``python -m jaxssl.evaluate``) and ``every`` (run during
training every that many steps and at the last step, on the fixed subset
``eval.train_examples`` / ``eval.test_examples``; 0: never; None: every ``train.eval_every``
steps). Adding a protocol is one module here (a class with ``@register``, imported below)
and one entry in ``jaxssl.config.base_config``'s ``evals``. ``base`` holds the context and the
base class, ``registry`` picks and runs them, ``training`` is what the trained protocols
(linear, fine-tuning) share.
"""

from jaxssl.evaluate.evaluators.base import (EVALUATORS, Context, Evaluator, is_accuracy,
                                             is_detail, register)
from jaxssl.evaluate.evaluators.finetune import Finetune
from jaxssl.evaluate.evaluators.knn import Knn
from jaxssl.evaluate.evaluators.linear import Linear
from jaxssl.evaluate.evaluators.logistic import Logistic
from jaxssl.evaluate.evaluators.rankme import RankMe
from jaxssl.evaluate.evaluators.registry import (DuringTraining, build, every, names, run_all,
                                                 skipped_notice)
from jaxssl.evaluate.evaluators.ridge import Ridge

__all__ = ["EVALUATORS", "Context", "DuringTraining", "Evaluator", "Finetune", "Knn", "Linear",
           "Logistic", "RankMe", "Ridge", "build", "every", "is_accuracy", "is_detail", "names",
           "register", "run_all", "skipped_notice"]
