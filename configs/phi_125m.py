"""A 125M-class Phi (GPT-2-small shape, Phi-1.5 tokenizer): the paper's smallest generator."""

from configs.base import base_config


def get_config():
    c = base_config()
    c.model.d_model = 768
    c.model.n_layers = 12
    c.model.n_heads = 12
    c.model.d_mlp = 3072
    c.model.rotary_dim = 32
    c.train.micro_batch = 256
    return c
