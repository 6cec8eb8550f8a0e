"""Constants of the embedded objects dataset (``synthetic_objects``).

Shared by the generator (``adafocus_tf.data.synthetic_objects``) and by the
``synthetic_objects`` config presets so that the two cannot disagree.
``docs/SYNTHETIC.md`` ("The objects dataset") explains why each value is
what it is. Plain Python values only: ``config.py`` imports this without
TensorFlow. The background's field, the colour jitter, the motion (1-3
pixels per frame, bouncing) and the label blocks are the texture dataset's
(``synthetic_spec``).

Changing anything that alters the generated pixels, labels or boxes must bump
``GENERATOR_VERSION``.
"""
from adafocus_tf.data import synthetic_spec

NUM_FRAMES = 8          # frames per video
FRAME_SIZE = 96         # stored frames are FRAME_SIZE x FRAME_SIZE RGB
PATCH_SIZE = 16         # focus patch side
# The class patterns repeat every TEXTURE_PERIOD pixels along each axis, and
# the glance net sees the frame box-averaged by exactly that much: every
# glance cell averages whole periods, so the class is gone at the glance's
# resolution (up to the object's smooth envelope). A period this long (not
# 2-4 pixels) keeps the patterns smooth at the focus network's stride and
# under the bilinear crop, so that V2's gradient reads the object's
# position rather than sub-pixel interpolation (docs/SYNTHETIC.md).
TEXTURE_PERIOD = 12
GLANCE_SIZE = FRAME_SIZE // TEXTURE_PERIOD

# The object (target) and the distractors: soft-edged discs, OBJECT_RADIUS
# pixels to where their colour has faded out, fully opaque within
# OBJECT_RADIUS - OBJECT_EDGE, blended smoothly in between. Larger than the
# patch, so that a patch anywhere within about 20 px of the centre overlaps
# the object.
OBJECT_RADIUS = 20
OBJECT_EDGE = 8
NUM_DISTRACTORS = 2

# The class patterns: sums of sinusoidal gratings of period TEXTURE_PERIOD,
# each grating given by its wave direction (dy, dx) in {-1, 0, 1}^2: (0, 1)
# varies along x (vertical stripes), (1, 0) along y, (1, 1) and (1, -1)
# along the diagonals (on every row and column they still repeat every
# TEXTURE_PERIOD pixels). The classes are the four single gratings and the
# six pairs of them (plaids, each grating at 1/sqrt(2) so that every class
# has the same energy). Each grating has its own random phase per video.
GRATINGS = (
    ("vertical", (0, 1)),
    ("horizontal", (1, 0)),
    ("diag_up", (1, 1)),      # stripes rising to the right
    ("diag_down", (1, -1)),   # stripes falling to the right
)
CLASS_GRATINGS = tuple((i,) for i in range(len(GRATINGS))) + tuple(
    (i, j) for i in range(len(GRATINGS)) for j in range(i + 1, len(GRATINGS)))
CLASS_NAMES = tuple("+".join(GRATINGS[i][0] for i in combo)
                    for combo in CLASS_GRATINGS)
NUM_CLASSES = len(CLASS_NAMES)

# The pattern is a luminance modulation of the target's colour: TEXTURE_AMPLITUDE
# grey levels at the centre, falling off as a Gaussian of TEXTURE_SIGMA
# pixels (and with the disc's soft edge), so that the evidence a patch sees
# grows steadily as it moves toward the centre.
TEXTURE_AMPLITUDE = 60.0
TEXTURE_SIGMA = 9.0

# Colours (RGB). The target's red marks "target here" at any resolution;
# distractors are the same discs in other hues with no pattern (no class).
# Kept TEXTURE_AMPLITUDE plus the jitter away from 0 and 255.
TARGET_COLOUR = (205, 55, 55)
DISTRACTOR_COLOURS = (
    (55, 85, 205),    # blue
    (55, 160, 75),    # green
    (200, 180, 55),   # yellow
)

# Less fine texture and sensor noise than the texture dataset: per-pixel
# noise adds pixel-scale image gradients under every patch, which reach V2's
# policy through the bilinear crop as noise.
BACKGROUND_TEXTURE_STD = 2.0
FRAME_NOISE_STD = 2.0

JPEG_QUALITY = 95

# The texture dataset's sizes and seed, so that one set of command-line
# defaults serves both (``adafocus-synthetic``).
NUM_TRAIN = synthetic_spec.NUM_TRAIN
NUM_VAL = synthetic_spec.NUM_VAL
VIDEOS_PER_SHARD = synthetic_spec.VIDEOS_PER_SHARD
DEFAULT_SEED = synthetic_spec.DEFAULT_SEED
GENERATOR_VERSION = 1
