"""healthscore.io layer."""
