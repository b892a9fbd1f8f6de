"""A 350M-class Phi (GPT-2-medium shape, Phi-1.5 tokenizer)."""

from configs.base import base_config


def get_config():
    c = base_config()
    c.model.d_model = 1024
    c.model.n_layers = 24
    c.model.n_heads = 16
    c.model.d_mlp = 4096
    c.model.rotary_dim = 32
    c.model.remat = True
    c.train.micro_batch = 256
    return c
