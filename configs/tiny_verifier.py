"""The tiny verifier: the tiny generator's trunk with a scalar head, trained on labelled samples."""

from configs.tiny import get_config as tiny_config


def get_config():
    c = tiny_config()
    c.objective = "verifier"
    c.model.head = "value"
    c.train.steps = 250
    c.train.lr = 1e-3
    c.train.warmup_steps = 30
    c.checkpoint.every = 125
    # model.dropout stays 0 (the demo's numbers); Cobbe et al. 2021's verifier recipe is 0.2.
    return c
