"""healthscore.spec layer."""
