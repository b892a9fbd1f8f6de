"""The tiny verifier: the tiny generator's trunk with a scalar head, trained on labelled samples."""

from configs.tiny import get_config as tiny_config


def get_config():
    c = tiny_config()
    c.objective = "verifier"
    c.model.head = "value"
    c.train.steps = 300
    c.train.lr = 3e-4
    c.train.warmup_steps = 30
    c.checkpoint.every = 100
    return c
