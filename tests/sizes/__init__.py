"""Per-family test sizes of the zoo: each module here defines ``SMALL`` (keyword params that make a
big model quick to test: fewer classes, narrower, shallower; the full-size parameter count is still
checked from the IR) and ``REFERENCE`` (published parameter counts at the default params). Keys
are a spec's file stem, or ``stem:model`` for a file that holds several models."""
