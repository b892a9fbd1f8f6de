"""Data: record schemas, the TFDS builder, evaluation sets and the tf.data input pipeline.

Importing this package is cheap: TensorFlow is only imported when a data set is built or read.
"""
