"""``archlab reproduce <id>|all``: the lecture's design claims as runnable, judged experiments.

* ``registry.py`` — ``experiments/claims/<id>.yaml`` → :class:`Claim` (arms, seeds, LR grid,
  budget, rule) and the list of jobs it implies;
* ``checks.py`` — metrics from run records and the generic checks (``lower``, ``equivalent``,
  ``lr_sensitivity_lower``, …), each → pass / fail / unknown with its numbers, and the verdict;
* ``runner.py`` — runs (or resumes) the jobs in-process, calls ``archlab compare``'s analysis,
  writes ``experiments/results/<id>.md`` (+ figures) and the summary ``experiments/README.md``.
"""


def main(argv=None) -> int:
    from archlab.claims.campaign import main as _main

    return _main(argv)
