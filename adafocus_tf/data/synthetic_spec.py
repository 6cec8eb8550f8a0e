"""Constants of the embedded synthetic dataset (``adafocus_tf.data.synthetic``).

Shared by the generator and by the ``synthetic`` config preset so that the
two cannot disagree. ``docs/SYNTHETIC.md`` explains why each value is what it
is. Plain Python values only: ``config.py`` imports this without TensorFlow.

Changing anything that alters the generated pixels, labels or boxes must bump
``GENERATOR_VERSION``: shards record it, and a resumed generation rewrites
every shard made by another version.
"""
NUM_CLASSES = 10
NUM_FRAMES = 8          # frames per video
FRAME_SIZE = 64         # stored frames are FRAME_SIZE x FRAME_SIZE RGB
GLANCE_SIZE = 16        # the glance net sees the frame box-averaged to this
PATCH_SIZE = 16         # focus patch side
OBJECT_SIZE = 12        # side of the target and of every distractor square
NUM_DISTRACTORS = 3

# The class textures: binary patterns that tile the object with period
# TEXTURE_PERIOD in both axes, drawn in an object's two colours ("1" is its
# first colour). Every row and every column of each pattern has exactly two
# 1s, so any window spanning 4 whole rows or 4 whole columns of a texture
# has the same mean for every class: box-averaged by 4 (the glance
# resolution), a target is a blob of one colour whatever its class. These are
# all such patterns up to translation (there are exactly 10), and the phase
# of the pattern is random per object, so translation cannot tell them apart
# either; only the fine structure does.
TEXTURE_PERIOD = 4
TEXTURES = (
    ("checker_1x1", ("0101", "1010", "0101", "1010")),
    ("checker_2x2", ("0011", "0011", "1100", "1100")),
    ("checker_2x1", ("0011", "1100", "0011", "1100")),  # cells 2 wide, 1 high
    ("checker_1x2", ("0101", "0101", "1010", "1010")),  # cells 1 wide, 2 high
    ("diag_down", ("0011", "1001", "1100", "0110")),
    ("diag_up", ("0011", "0110", "1100", "1001")),
    ("weave_a", ("0011", "0101", "1010", "1100")),
    ("weave_b", ("0011", "1010", "0101", "1100")),
    ("weave_c", ("0011", "0101", "1100", "1010")),
    ("weave_d", ("0011", "0110", "1001", "1100")),
)
CLASS_NAMES = tuple(name for name, _ in TEXTURES)

# Colour pairs (first, second) in RGB. The target's saturated red appears in
# no distractor or background, so it marks "target here" at any resolution;
# distractors wear the same textures in other hues. Every pair shares the
# white so that luminance contrast (what survives JPEG best) is similar.
TARGET_COLOURS = ((225, 35, 35), (240, 240, 240))
DISTRACTOR_COLOURS = (
    ((35, 75, 225), (240, 240, 240)),    # blue
    ((35, 165, 60), (240, 240, 240)),    # green
    ((215, 190, 35), (240, 240, 240)),   # yellow
)
COLOUR_JITTER = 12      # per video, per colour and channel: uniform +-this

# Motion: every object moves at a constant integer velocity, MIN_SPEED to
# MAX_SPEED pixels per frame in each axis (random signs), and bounces off
# the frame borders, so that it always lies wholly inside the frame.
MIN_SPEED = 1
MAX_SPEED = 3

# Background: a per-video grey level with a slight tint, a smooth random
# field (BACKGROUND_GRID x BACKGROUND_GRID control points, bilinearly
# interpolated; mostly brightness, a little colour, so that it never turns
# the target's red), a static fine texture, and fresh sensor noise on every
# frame over everything (objects included).
BACKGROUND_LEVEL = (70, 150)
BACKGROUND_TINT = 12
BACKGROUND_GRID = 5
BACKGROUND_FIELD_STD = 18.0         # brightness, shared by the channels
BACKGROUND_CHROMA_STD = 6.0         # per channel
BACKGROUND_TEXTURE_STD = 6.0
FRAME_NOISE_STD = 4.0

# Frames are stored as JPEG at this quality without chroma subsampling
# (4:4:4), so that 1-pixel features of the textures survive in colour too.
JPEG_QUALITY = 95

NUM_TRAIN = 2400
NUM_VAL = 600
VIDEOS_PER_SHARD = 200
DEFAULT_SEED = 1234
GENERATOR_VERSION = 1
