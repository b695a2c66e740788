"""Fine-tuning the FID Inception on faces: training and label sources."""
