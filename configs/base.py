"""Defaults shared by every experiment; each config file overrides what makes it different.

Key names are a contract (CLIs, tests and docs rely on them):
model.{vocab_size, d_model, n_layers, n_heads, d_mlp, rotary_dim, max_len, head, dropout},
mesh.{data, fsdp, tensor}, data.{path, seq_len, group_by_question, execution_result},
train.{steps, global_batch, lr, warmup_steps, weight_decay, seed, lm_loss_weight,
rank_loss_weight, rank_loss}, checkpoint.every, log.every,
eval.{every, dataset, limit, max_new_tokens}.
"""

import ml_collections


def base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    # "generator": next-token loss on solution tokens; "verifier": token-level BCE on the value head.
    c.objective = "generator"

    c.model = ml_collections.ConfigDict()
    c.model.vocab_size = 51200
    c.model.d_model = 2048
    c.model.n_layers = 24
    c.model.n_heads = 32
    c.model.d_mlp = 8192
    c.model.rotary_dim = 32
    c.model.max_len = 2048
    c.model.head = "lm"  # "lm" = generator, "value" = verifier (one scalar per position)
    c.model.layer_norm_eps = 1e-5
    c.model.rope_theta = 10000.0
    c.model.dtype = "auto"  # compute dtype: "auto" = bfloat16 on accelerators, float32 on CPU
    c.model.remat = False  # rematerialise each block in the backward pass (saves activations)
    # Layers per iteration of the layer scan: "auto" = all of them on CPU (faster steps), 1 on
    # accelerators (compile time flat in depth); an int sets it.
    c.model.scan_unroll = "auto"
    # Phi's resid_pdrop/embd_pdrop: dropout on the embedding and on each block's attention and
    # MLP outputs, in training only (sampling, scoring, train_eval and export run without it).
    # 0 = off, the program of before bit for bit; Cobbe et al. 2021 train verifiers at 0.2.
    c.model.dropout = 0.0

    c.mesh = ml_collections.ConfigDict()
    c.mesh.data = -1  # -1 fills with the devices left over
    c.mesh.fsdp = 1
    c.mesh.tensor = 1

    c.data = ml_collections.ConfigDict()
    c.data.path = ""  # a TFDS directory written by `python -m tinygsm_jax.data build`
    c.data.seq_len = 1024
    c.data.shuffle_buffer = 10000
    # Verifier: batches that keep each question's candidates together (shuffle questions, not
    # rows; a question's candidates in one micro-batch). Needed by train.rank_loss_weight > 0.
    c.data.group_by_question = False
    # Verifier: read each candidate's execution result, a comment line after the body
    # ("# returns 177", "# error: NameError", "# no answer"; LEVER). The data set must be built
    # with `data build --execution-result` (train checks its metadata); eval reads the choice
    # from the checkpoint and builds the same line from each sample's execution.
    c.data.execution_result = False

    c.train = ml_collections.ConfigDict()
    c.train.steps = 20000
    c.train.global_batch = 1024
    c.train.micro_batch = 0  # global micro-batch for gradient accumulation; 0 = no accumulation
    c.train.lr = 1e-4
    c.train.end_lr_ratio = 0.1  # linear decay from lr to lr * end_lr_ratio after warm-up
    c.train.warmup_steps = 500
    c.train.weight_decay = 0.01
    c.train.b1 = 0.9
    c.train.b2 = 0.95
    c.train.grad_clip = 1.0
    c.train.seed = 0
    # Verifier only: weight of the language-modelling loss added to the value loss on the same
    # tokens (Cobbe et al. 2021's joint objective); > 0 keeps the LM head in the checkpoint.
    c.train.lm_loss_weight = 0.0
    # Verifier only: weight of a within-question ranking loss on the scores at each candidate's
    # last token, beside the token-level BCE (LEVER, V-STaR); 0 = the BCE alone, as before.
    # rank_loss: "pairwise" (softplus(s_wrong - s_right) over right/wrong pairs of a question,
    # mean over pairs) or "listwise" (-log of the right candidates' softmax mass per question,
    # mean over questions with both).
    c.train.rank_loss_weight = 0.0
    c.train.rank_loss = "pairwise"
    c.train.init_from = (
        ""  # a checkpoint to start from (imported Phi-1.5; the generator, for a verifier)
    )

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every = 1000
    c.checkpoint.keep = 3

    c.log = ml_collections.ConfigDict()
    c.log.every = 10

    # Accuracy during training (tinygsm_jax.train_eval): greedy decodes of eval questions,
    # executed and scored every `every` steps; 0 = off.
    c.eval = ml_collections.ConfigDict()
    c.eval.every = 0
    # KIND:PATH as in tinygsm_jax.eval (gsm8k, svamp, jsonl; gs:// too), e.g. gsm8k:test.jsonl
    c.eval.dataset = ""
    c.eval.limit = 0  # the first K questions; 0 = all
    c.eval.max_new_tokens = 256
    c.eval.questions_per_batch = 32
    return c
