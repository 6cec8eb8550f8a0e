"""AdaFocus+ early exit: a video stops at the first confident exit step.

  thresholds.py  the rule (confidences, exit steps), exit profiles and their
                 cost from per-exit-step MACs, fitting thresholds to a
                 profile or a budget, ``<run>/early_exit.json``
  runner.py      ``EarlyExitRunner``: step-by-step inference through a
                 ``Recognizer`` that computes only for the videos still
                 running
  calibrate.py   fitting a run's thresholds on its training split and the
                 accuracy-vs-GFLOPs curve on its evaluation split
                 (``launch/calibrate_exit.py``)

See docs/EARLY_EXIT.md.
"""
