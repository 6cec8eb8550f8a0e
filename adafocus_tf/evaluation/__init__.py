"""Evaluation of a run on prepared splits.

  predictions.py    a Recognizer over a split: per-step and exit-step
                    probabilities, patch offsets, labels
  metrics.py        top-1, top-5, mAP (multi-label aware), per-step mAP
  evaluate.py       one evaluation of a run (launch/evaluate.py), recorded
                    in its metrics.json
  results_table.py  the table every training run ends with: policy, random,
                    centre, oracle and glance-only rows
"""
