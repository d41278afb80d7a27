"""Model coverage: which architectures our backends serve, model-specific start fixes."""
