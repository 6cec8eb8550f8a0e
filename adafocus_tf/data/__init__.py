"""Data: record format, shard layout, dataset preparation and tf.data input."""
