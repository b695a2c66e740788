"""Files out and back: atomic writes, torch.save files, the feature cache."""
