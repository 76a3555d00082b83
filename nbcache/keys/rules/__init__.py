"""The builtin families of hashing rules; ``nbcache.keys`` registers them in order.

containers (exact builtins, the hot path), handles (refused at once), names
(installed code), ndarrays (numpy), objects (plain objects, wrappers,
tensors, and the reduce-protocol fallback, last).  Each module imports only
:mod:`nbcache.keys.hashing` (and ``containers`` for its item walk).
"""
