"""Exactly Phi-1.5 (1,418,270,720 parameters), finetuned with the paper's hyperparameters.

Start from the real weights: `python -m tinygsm_jax.import_hf --hf-dir PHI15 --out ckpt/phi15`
then `--config.train.init_from=ckpt/phi15`.
"""

from configs.base import base_config


def get_config():
    c = base_config()  # the base defaults are Phi-1.5's shape and the paper's optimiser
    c.model.remat = True
    c.mesh.fsdp = -1
    c.mesh.data = 1
    c.train.micro_batch = 128
    return c
