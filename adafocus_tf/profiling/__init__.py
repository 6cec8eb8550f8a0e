"""What a run costs: MACs counted from the models, profiles of its steps.

  mac_counter.py      multiply-accumulates of Keras layers as they run
  flops.py            an AdaFocus config's MACs per part, GFLOPs per video
  step_profiler.py    TensorBoard profiles of a window of training steps
  inference_parts.py  a recognizer's inference as named, timed parts
"""
