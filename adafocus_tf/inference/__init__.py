"""Using a trained run: one ``Recognizer`` composes the pipeline.

  recognizer.py  glance -> policy -> patches -> focus -> classifier, for
                 each model family (whole clips, or step by step)
  loading.py     a run directory (or config and checkpoints) -> Recognizer
  clips.py       video files and frame folders read as evaluation reads
                 videos
  predictor.py   predictions on files: top-k, patch boxes, cost
  prediction.py  what a prediction holds (``Prediction``) and its JSON
  visualize.py   contact sheets and GIFs of the chosen patches
  early_exit/    AdaFocus+ thresholds, calibration and frame-by-frame runs
"""
