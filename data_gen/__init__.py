"""The teacher side of TinyGSM: synthesise, parse, filter and decontaminate problems.

Subcommands (`python -m data_gen ...`): `synth` (async OpenAI-compatible client), `batch`
(OpenAI Batch API), `offline` (the embedded procedural teacher), `filter` (execute, dedup,
decontaminate), `estimate` (what a run will cost).
"""
