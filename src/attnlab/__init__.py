"""attnlab: train multi-head causal transformers from scratch, and see inside them."""

__version__ = "0.1.0"

from attnlab import hardware as _hardware, resume as _resume

# config resolvers used in conf/: ${attnlab.run_dir:...} and ${attnlab.record_dir:...} (a resumed
# run keeps its folder), ${attnlab.precision:<accelerator>} (the trainer's default precision)
_resume.register_resolvers()
_hardware.register_resolvers()
