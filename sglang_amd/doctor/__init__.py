"""`sglang-amd doctor`: how a model would be served, from its config alone."""
