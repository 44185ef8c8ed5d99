"""LRA data: generators of the synthetic tasks, readers of the real release formats, compact array splits."""
