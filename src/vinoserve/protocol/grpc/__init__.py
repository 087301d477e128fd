"""gRPC front end: TF Serving and KServe v2 servicers, tensor conversion and the error table."""
