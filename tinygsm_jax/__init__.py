"""tinygsm_jax: the TinyGSM recipe (synthetic data, Phi generator, verifier, best-of-N) in JAX."""

__version__ = "0.1.0"
