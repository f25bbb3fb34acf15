"""One module per process type. Each only composes: which resources, streams and jobs it runs."""
