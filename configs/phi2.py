"""Phi-2 (2.7B): 32 layers, d_model 2560, 32 heads of 80, rotary on 32 dims, MLP 10240."""

from configs.base import base_config


def get_config():
    c = base_config()
    c.model.d_model = 2560
    c.model.n_layers = 32
    c.model.n_heads = 32
    c.model.d_mlp = 10240
    c.model.rotary_dim = 32
    c.model.remat = True
    c.mesh.fsdp = -1
    c.mesh.data = 1
    c.train.micro_batch = 64
    return c
