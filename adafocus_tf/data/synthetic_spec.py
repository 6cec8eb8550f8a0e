"""Constants of the embedded synthetic dataset (see datasets/synthetic.py).

Shared by the generator and by the ``synthetic`` config preset so that the
two cannot disagree.
"""
NUM_CLASSES = 10
NUM_FRAMES = 8          # frames per video
FRAME_SIZE = 64         # stored frames are FRAME_SIZE x FRAME_SIZE
GLANCE_SIZE = 16        # the glance net sees the frame box-averaged to this
PATCH_SIZE = 16         # focus patch side
OBJECT_SIZE = 12        # side of the class-carrying object
NUM_DISTRACTORS = 3
NUM_TRAIN = 2400
NUM_VAL = 600
DEFAULT_SEED = 1234
