"""Trainer workers: roll out a policy with vLLM, get per-objective rewards over HTTP, update it in torch.

Trainers are clients of the reward service: rewards come only through `clients.RewardClient`; the
objectives maths (PAMA's closed form, DPA directions) comes from `service.objectives`; nothing here
imports the server's machinery (`service.api`, `engine`, `model`, `scoring`, ...), which
tests/training/test_imports.py keeps so. Layout: `config` (torch-free settings), `cli`, `data`, `policy`,
`rollout`, `rewards` (+ `rule_rewards`), `advantages`, `losses`, `sequences`, `loop` (the shared loop),
`checkpoint`, `metrics`, `distributed`, and one file per algorithm (`grpo`, `noon_ppo`, `dpa`).
"""
