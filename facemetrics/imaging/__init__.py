"""Images in: folder/zip scanning and decoding, the presets' resizers, in-memory inputs."""
