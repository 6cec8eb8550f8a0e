"""AdaFocus+ early exit: a video stops at the first confident exit step.

  exit_rule.py       the rule: each exit step's confidence (its criterion),
                     the exit steps and the predictions at exit
  exit_cost.py       exit profiles and their cost from per-exit-step MACs,
                     the geometric ratio that meets a budget
  threshold_fit.py   fitting thresholds to a profile, their accuracy and
                     cost on some videos
  threshold_file.py  ``<run>/early_exit.json``: saving, loading and refusing
                     thresholds fitted on other weights
  runner.py          ``EarlyExitRunner``: step-by-step inference through a
                     ``Recognizer`` that computes only for the videos still
                     running
  calibrate.py       fitting a run's thresholds on its training split and
                     the accuracy-vs-GFLOPs curve on its evaluation split
                     (``launch/calibrate_exit.py``)

See docs/EARLY_EXIT.md.
"""
