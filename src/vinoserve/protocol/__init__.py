"""Wire protocols: gRPC (TF Serving, KServe v2) and REST, over the one data plane."""
