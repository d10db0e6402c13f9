"""``archlab reproduce <id>|all``: the lecture's design claims as runnable, judged experiments.

* ``registry.py`` — ``experiments/claims/<id>.yaml`` → :class:`Claim` (arms, seeds, LR grid,
  budget, rule) and the list of jobs it implies;
* ``metrics.py`` — metric values from run records, an arm's values at its tuned LR and seeds
  (diverged runs at their loss at init);
* ``checks.py`` — the registry of checks (``superior``, ``non_inferior``, ``equivalent``,
  ``lr_sensitivity_lower``, …; statistics in ``archlab.runs.inference``), each → pass / fail /
  unknown with its numbers, Holm on the fail side, and the verdict;
* ``protocol.py`` — the out-of-sample LR pick (scout → recorded pick → confirm) and the
  pre-registration hash;
* ``runner.py`` — runs (or resumes) the jobs in-process, calls ``archlab compare``'s analysis,
  writes ``experiments/results/<id>.md`` (+ figures) and the summary ``experiments/README.md``;
* the campaign around it (issue #12): ``campaign.py`` (the ``archlab reproduce`` CLI: checks
  before training, scratch training, records, reports from records), ``records.py`` (compact
  committed run records, restore, pooling refusal), ``pin.py`` (the pinned corpus),
  ``plan.py`` (``--plan``), ``layout.py`` (jobs × threads, ``--calibrate``), ``minimums.py``
  (``experiments/campaign.yaml``, protocol minimums, "exploratory"), ``grid_table.py`` (per
  arm × LR table, margins beside the literature).
"""
