"""Looking at recipes and trained runs: distortion previews, robustness curves."""
