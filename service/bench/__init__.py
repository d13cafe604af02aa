"""`paretorm bench`: the side-by-side throughput benchmark (service, in-process ceiling, vLLM, naive floor).

Everything in one run, on one model built on the fly and one deterministic workload, so the printed
ratios compare like with like. Entry point: `service.bench.cli:main(argv)`.
"""
