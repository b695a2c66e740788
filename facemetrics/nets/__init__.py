"""Networks and their weights: the FID Inception, the face-domain Inception, weight lookup."""
