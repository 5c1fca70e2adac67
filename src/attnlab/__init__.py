"""attnlab: train multi-head causal transformers from scratch, and see inside them."""

__version__ = "0.1.0"

from attnlab.resume import register_resolvers as _register_resolvers

_register_resolvers()  # ${attnlab.run_dir:...} in conf/config.yaml: a resumed run keeps its folder
