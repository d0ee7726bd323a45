"""The contract shared by training, predictor and operator: bundle format, feature schema, storage,
the batch Jobs' exit codes and termination message (jobs), the predictor's metric names that the
analysis queries (metrics), and the command lines and env names the operator writes (commands).

Kept dependency-light (numpy, pydantic, boto3) because every image ships it.
"""
