"""Shared helpers of the test suite: import them relatively (``from ..helpers.models import write_affine``).

``server`` starts the real server in-process; ``models`` builds small models; ``clients`` holds the
request builders and error catchers; ``management`` the model-version helpers; ``demo`` prepares the
demo; ``example_client`` and ``tls`` serve the example client's tests; ``shutdown`` runs the server
as a process for the graceful-shutdown tests; ``batcher`` holds the fake model of the batcher's unit
tests, ``batching`` the clients and servers of the batching tests on real servers; ``shm`` the
shared-memory regions and tensors of the system shared memory tests; ``tfs_rest`` the TF Serving
REST predict call; ``kserve`` the tritonclient infer call of the KServe v2 tests.
"""
