"""When, and on which infer request, a request to a model version runs.

A request passes, in order: :mod:`.admission` (a bound on the requests in progress per version),
:mod:`.variants` (the compiled variant for its shapes: pinned when the shapes are fixed at load,
compiled on demand under ``auto``) and :mod:`.pool` (a free infer request of that variant, given
back only once OpenVINO is done with it). Merging requests into batches belongs between admission
and the variant: one component owning the queue, the per-request futures and the batch rule, whose
merged batches go through the same variant cache and pool.
"""
