"""TensorFlow as the input pipeline's engine only: imported lazily and kept off accelerators.

Importing TensorFlow costs seconds and, left alone, it grabs GPU memory that JAX needs. Only the
data builder and the input pipeline call `import_tf()`; the model and sampler never do.
"""

from __future__ import annotations

import os

_configured = False


def import_tf():
    """Import TensorFlow with every GPU hidden from it (it only parses and batches records)."""
    global _configured
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import tensorflow as tf

    if not _configured:
        try:
            tf.config.set_visible_devices([], "GPU")
        except RuntimeError:  # already initialised by someone else: nothing more we can do
            pass
        _configured = True
    return tf
