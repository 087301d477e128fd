"""HTTP front end: TF Serving REST, KServe v2 REST and ``/metrics`` on one aiohttp server."""
