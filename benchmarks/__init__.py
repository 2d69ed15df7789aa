"""Speed benchmarks of jaxinv against eager PyTorch; run as scripts, not collected by tests."""
