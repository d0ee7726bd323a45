"""The contract shared by training, predictor and operator: bundle format, feature schema, storage.

Kept dependency-light (numpy, pydantic, boto3) because every image ships it.
"""
