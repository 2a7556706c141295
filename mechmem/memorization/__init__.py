"""Counterfactual memorization: K models on random halves of a training set, per example
mem = P(correct | in) - P(correct | held out) (Feldman and Zhang 2020).

Files: _subsets (random halves, one chunk of models trained together), _run (`memorization`,
its resumable folder), _result (`MemorizationResult`, the scores).
"""

from ._result import MemorizationResult as MemorizationResult
from ._run import memorization as memorization
from ._subsets import subset_dataset as subset_dataset
from ._subsets import subset_mask as subset_mask
