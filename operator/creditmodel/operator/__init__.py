"""kopf operator for CreditModel resources: canary rollouts, analysis, autoscaling, training Jobs."""
