"""Fitting ArmoRM-style reward models (``paretorm fit``): embeddings, ridge heads, debiasing, gating.

Stage modules work on tensors only (``regression``, ``debias``, ``gating_fit``); ``data``, ``encoding`` and
``embed`` turn JSONL files and a backbone into those tensors; ``package`` and ``report`` write the results;
``pipeline`` runs it all and ``cli`` exposes it. Nothing is imported here: ``paretorm fit --help`` stays
instant, and each caller imports the stage it uses.
"""
