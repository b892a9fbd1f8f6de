"""The embedded CPU default: a ~4M-parameter Phi that learns the offline teacher's problems in minutes."""

from configs.base import base_config


def get_config():
    c = base_config()
    c.model.vocab_size = 2048
    c.model.d_model = 256
    c.model.n_layers = 4
    c.model.n_heads = 8
    c.model.d_mlp = 1024
    c.model.rotary_dim = 16
    c.model.max_len = 512
    c.data.seq_len = 256
    c.train.steps = 600
    c.train.global_batch = 16
    c.train.lr = 2e-3
    c.train.warmup_steps = 50
    c.checkpoint.every = 100
    c.log.every = 10
    return c
