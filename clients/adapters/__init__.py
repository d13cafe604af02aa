"""Trainer adapters: the service as TRL reward functions, an OpenRLHF `reward_func`, a veRL `compute_score`.

Each adapter imports only `clients` (no torch, no trainer package): the trainers call them, never the
other way round.
"""
