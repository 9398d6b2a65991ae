"""Where results go: local files, W&B, plots and the HTML report; reads typed curve points only."""
