"""Imports (and so registers) the built-in model families, in order."""
# pylint: disable=unused-import
from adafocus_tf.families.one_stream import family as one_stream
from adafocus_tf.families.two_stream import family as two_stream
from adafocus_tf.families.v2 import family as v2
from adafocus_tf.families.v2_tsm import family as v2_tsm
from adafocus_tf.families.uni import family as uni
from adafocus_tf.families.uni_tsm import family as uni_tsm
from adafocus_tf.families.uni_x3d import family as uni_x3d
