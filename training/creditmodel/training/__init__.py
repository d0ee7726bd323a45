"""Training pipeline: credit data to a validated, quantized, published model bundle."""
