"""The paper's 1.3B verifier: Phi-1.5 trunk initialised from the finetuned generator, scalar head."""

from configs.phi1_5 import get_config as phi15_config


def get_config():
    c = phi15_config()
    c.objective = "verifier"
    c.model.head = "value"
    c.train.steps = 5000
    return c
