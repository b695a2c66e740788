"""The scoring pipeline: plan, decode passes, features, sharding, torchrun, streaming."""
